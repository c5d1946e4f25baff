"""What `mmops offline` feeds the model: request pairing (replicate / cycle), frame sampling,
built-in samples, media checks; and the LLM() / SamplingParams arguments of a job."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmops.errors import UsageError
from mmops.launch.spec import LaunchSpec
from mmops.offline import child, inputs, models
from mmops.offline.inputs import Request
from mmops.offline.job import Job, offline_preflight, sampling_params, with_model_defaults

MEDIA = Path(__file__).resolve().parents[1] / "checks" / "media"


def test_num_prompts_replicates_the_first_question_and_the_media():
    """vision_language.py: N requests, all with prompts[0] and the same data by default."""
    assert inputs.plan_requests(4, questions=4, media=1, different=False) == [Request(0, 0)] * 4


def test_different_prompts_cycle_as_the_example_does():
    """--use-different-prompt-per-request: prompt i % len(prompts); media i % len(media)."""
    got = inputs.plan_requests(6, questions=4, media=2, different=True)
    assert [(r.question, r.media) for r in got] == [(0, 0), (1, 1), (2, 0), (3, 1), (0, 0), (1, 1)]


def test_one_prompt_is_a_single_request():
    assert inputs.plan_requests(1, 4, 1, True) == [Request(0, 0)]


def test_given_questions_are_all_used_in_turn(tmp_path):
    got = inputs.gather(None, [], None, ["a?", "b?"], 3, 16, False)
    assert got.questions == ("a?", "b?")
    assert [r.question for r in got.requests] == [0, 1, 0]


@pytest.mark.parametrize(
    ("total", "num", "expected"),
    [
        # np.linspace(0, total - 1, num, dtype=int), as vllm/assets/video.py samples, evaluated
        # with numpy 2 in the vLLM CPU venv:
        (8, 8, [0, 1, 2, 3, 4, 5, 6, 7]),
        (8, 4, [0, 2, 4, 7]),
        (8, 1, [0]),
        (300, 16, [0, 19, 39, 59, 79, 99, 119, 139, 159, 179, 199, 219, 239, 259, 279, 299]),
        (100, 16, [0, 6, 13, 19, 26, 33, 39, 46, 52, 59, 66, 72, 79, 85, 92, 99]),
        (17, 16, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16]),
        (1000, 7, [0, 166, 333, 499, 666, 832, 999]),
        (9, 2, [0, 8]),
    ],
)
def test_frame_indices_are_numpys_linspace(total, num, expected):
    assert child.sample_frame_indices(total, num) == expected


def test_frame_indices_need_a_frame():
    with pytest.raises(ValueError):
        child.sample_frame_indices(0, 4)


def test_the_built_in_samples_are_used_when_no_media_is_given():
    image = inputs.gather(None, [], None, [], 2, 16, False)
    assert image.sample and image.media == ((MEDIA / "red-circle.png").resolve(),)
    assert image.questions == inputs.IMAGE_QUESTIONS
    video = inputs.gather("video", [], None, [], 2, 16, False)
    assert video.sample and video.media == ((MEDIA / "moving-dot.mp4").resolve(),)
    assert video.questions == ("Why is this video funny?",)


def test_a_video_alone_means_video():
    got = inputs.gather(None, [], str(MEDIA / "moving-dot.mp4"), [], 1, 16, False)
    assert got.modality == "video" and not got.sample


def test_sniffing_tells_images_from_videos_whatever_the_name(tmp_path):
    assert inputs.sniff(MEDIA / "red-circle.png") == "image"
    assert inputs.sniff(MEDIA / "blue-square.jpg") == "image"
    assert inputs.sniff(MEDIA / "moving-dot.mp4") == "video"
    odd = tmp_path / "data.bin"
    odd.write_bytes(b"not a known format")
    assert inputs.sniff(odd) is None
    assert inputs.check_media("--image", str(odd), "image") == odd.resolve()  # PIL decides


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"modality": "audio"}, "--modality 'audio': unknown; valid: image, video"),
        ({"num_prompts": 0}, "--num-prompts must be at least 1; got 0"),
        ({"num_frames": 0}, "--num-frames must be at least 1; got 0"),
        ({"images": ["/no/such.png"]}, "--image /no/such.png: no such file"),
        ({"video": str(MEDIA)}, f"--video {MEDIA}: is a directory, not a video file"),
        (
            {"modality": "image", "video": str(MEDIA / "moving-dot.mp4")},
            f"--video {MEDIA / 'moving-dot.mp4'} with --modality image: pass --modality video",
        ),
        (
            {"images": [str(MEDIA / "moving-dot.mp4")]},
            f"--image {MEDIA / 'moving-dot.mp4'}: this is a video file; --image takes an image "
            "(JPEG, PNG, ...)",
        ),
        ({"questions": ["  "]}, "--question: empty; give the question text"),
    ],
)
def test_bad_input_is_one_clear_line(kwargs, message):
    args = {
        "modality": None, "images": [], "video": None, "questions": [], "num_prompts": 4,
        "num_frames": 16, "different": False, **kwargs,
    }  # fmt: skip
    with pytest.raises(UsageError) as err:
        inputs.gather(**args)
    assert str(err.value) == message


def test_a_model_type_without_video_refuses_it():
    with pytest.raises(UsageError, match="--model-type toy takes image"):
        inputs.gather("video", [], None, [], 1, 16, False, supported=("image",), model_type="toy")


def _job(spec: LaunchSpec, modality: str = "image") -> Job:
    mtype = models.model_type("qwen2_5_vl")
    got = inputs.gather(modality, [], None, [], 2, 16, False)
    return Job(with_model_defaults(spec, mtype), mtype, got, 16, sampling_params({}))


def test_engine_arguments_from_the_launch_flags():
    spec = LaunchSpec(
        model="/m",
        args={
            "max-model-len": 2048, "host": "0.0.0.0", "api-key": "secret", "block-size": 128,
            "no-enable-prefix-caching": True, "distributed-executor-backend": "ray",
            "limit-mm-per-prompt": "image=2,video=1", "hf-overrides": '{"a": 1}',
        },
    )  # fmt: skip
    engine, notes = _job(spec).engine_args()
    assert engine == {
        "model": "/m", "max_model_len": 2048, "block_size": 128, "enable_prefix_caching": False,
        "distributed_executor_backend": "ray", "hf_overrides": {"a": 1},
        "limit_mm_per_prompt": {"image": 2, "video": 1},
        "mm_processor_kwargs": {"min_pixels": 784, "max_pixels": 1003520, "fps": 1},
    }  # fmt: skip
    assert notes == ["not an engine argument, ignored offline: --host, --api-key"]


def test_the_example_limits_media_to_the_modality_in_use():
    engine, _ = _job(LaunchSpec(model="/m"), "video").engine_args()
    assert engine["limit_mm_per_prompt"] == {"image": 0, "video": 1}


def test_model_type_defaults_yield_to_what_is_given():
    mtype = models.model_type("internvl_chat")
    assert with_model_defaults(LaunchSpec(model="/m"), mtype).args == {"trust-remote-code": True}
    given = LaunchSpec(model="/m", args={"trust-remote-code": False})
    assert with_model_defaults(given, mtype).args == {"trust-remote-code": False}


def test_sampling_defaults_are_the_references():
    assert sampling_params({}) == {
        "max_tokens": 16, "top_k": -1, "top_p": 1.0, "temperature": 1.0, "ignore_eos": False,
        "repetition_penalty": 1.0, "stop_token_ids": None,
    }  # fmt: skip
    got = sampling_params({"temperature": 0.0, "stop_token_ids": [0, 92543], "top_p": None})
    assert got["temperature"] == 0.0 and got["stop_token_ids"] == [0, 92543] and got["top_p"] == 1.0


def test_the_preflight_is_the_doctors_without_the_port_check(model_dir):
    spec = LaunchSpec(model=str(model_dir()), args={"max-model-len": 4096, "port": 1})
    spec, pre = offline_preflight(spec, skip=False)
    assert pre.report is not None
    port = pre.report.get("host.port")
    assert port is not None and port.status == "skip"
    assert port.summary == "offline inference listens on no port"
    assert offline_preflight(spec, skip=True)[1].report is None
