"""`mmops offline`: vLLM's vision_language.py offline inference, with nothing to edit.

    mmops offline --model-type qwen2_5_vl --model DIR                  # the sample image, 4 prompts
    mmops offline --model DIR --image a.jpg --image b.png --question "What is in it?"
    mmops offline --model DIR --modality video --video clip.mp4 --num-frames 16
    mmops offline --profile internvl2.5-78b --max-tokens 64 --temperature 0 --json

The reference's script flags keep their names (--model-type, --num-prompts, --modality,
--num-frames; its LLM() and SamplingParams settings as flags); any `vllm serve` flag that is an
engine argument (--max-model-len, --block-size, --distributed-executor-backend ray, ...) may
follow. Exit 0 done, 1 vLLM failed (its log's diagnosis is shown), 2 bad input, a failed
preflight or no vLLM, 128+N when stopped by signal N.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from mmops.commands.sampling import add_sampling_arguments, given_sampling
from mmops.errors import UsageError
from mmops.launch.spec import add_launch_arguments

OWN_FLAGS: list[str] = []  # this command's --flags, for the typo check on vLLM flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "offline",
        help="offline inference as vLLM's vision_language.py: image or video prompts, a report",
        description="Run vLLM's offline inference (LLM.generate) on image or video prompts in the "
        "prompt format of each model type, as vLLM's examples/offline_inference/"
        "vision_language.py does, with nothing to edit: the doctor's preflight first, vLLM in "
        "its own interpreter under the reaper, then each output with its prompt, token counts "
        "and finish reason, the time of each stage and the throughput. Any `vllm serve` flag "
        "that LLM() takes may follow.",
    )
    add_launch_arguments(p)
    p.add_argument(
        "--model-type",
        metavar="TYPE",
        help="qwen2_5_vl, qwen2_vl or internvl_chat (default: from the model's config.json)",
    )
    what = p.add_argument_group("inputs (default: a built-in sample image or video)")
    what.add_argument(
        "--image", "--image-path", dest="image", action="append", default=[], metavar="PATH",
        help="an image file (any format PIL reads); repeat to cycle several over the prompts",
    )  # fmt: skip
    what.add_argument("--video", metavar="PATH", help="a video file (MP4, WebM, AVI, ...)")
    what.add_argument(
        "--question", action="append", default=[], metavar="TEXT",
        help="the question; repeat to cycle several (default: the example's)",
    )  # fmt: skip
    what.add_argument(
        "--modality", metavar="image|video", help="default image, or video with --video"
    )
    what.add_argument("--num-prompts", type=int, default=4, metavar="N", help="default 4")
    what.add_argument(
        "--num-frames", type=int, default=16, metavar="F",
        help="frames picked evenly from the video (default 16)",
    )  # fmt: skip
    what.add_argument(
        "--use-different-prompt-per-request", action="store_true",
        help="cycle the example's questions over the prompts instead of repeating the first",
    )  # fmt: skip
    add_sampling_arguments(
        p,
        title="sampling (SamplingParams; defaults as in the reference)",
        temperature_help="default 1.0; 0 is greedy",
        stop_help="default: the model type's stop tokens looked up in the model's tokenizer",
    )
    p.add_argument("--no-preflight", action="store_true", help="do not run the doctor first")
    p.add_argument(
        "--state-dir", metavar="DIR",
        help="where run folders go (default: mmops/offline in the XDG state dir)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--verbose", "-v", action="store_true", help="show vLLM's output as it runs (on stderr)"
    )
    p.add_argument(
        "--stop-timeout", type=float, default=10.0, metavar="S",
        help="on Ctrl-C: seconds after SIGINT, and again after SIGTERM, before SIGKILL",
    )  # fmt: skip
    p.set_defaults(func=run, accepts_vllm_flags=True)
    OWN_FLAGS[:] = sorted(
        {s[2:] for a in p._actions for s in a.option_strings if s.startswith("--")}
    )


def run(args: argparse.Namespace) -> int:
    from mmops.launch.preflight import launch_spec
    from mmops.offline import session

    _check_typos(getattr(args, "vllm_argv", None) or [])
    opts = session.Options(
        model_type=args.model_type,
        images=args.image,
        video=args.video,
        questions=args.question,
        modality=args.modality,
        num_prompts=args.num_prompts,
        num_frames=args.num_frames,
        different_prompts=args.use_different_prompt_per_request,
        sampling={**given_sampling(args), "stop_token_ids": args.stop_token_ids},
        no_preflight=args.no_preflight,
        state_dir=args.state_dir,
        stop_timeout_s=max(0.0, args.stop_timeout),
    )
    job = session.prepare(launch_spec(args), opts)
    from mmops.offline.runner import echo_line

    done = session.run(job, opts, note=_note, on_line=echo_line if args.verbose else None)
    if done.report is not None:
        if args.json:
            print(json.dumps(done.report, indent=2, ensure_ascii=False))
        else:
            from mmops.offline.report import render

            print(render(done.report))
        return done.exit_code
    if done.run_dir is None:  # refused before anything ran (a failed preflight)
        return done.exit_code
    if args.json:
        print(json.dumps(done.to_json(), indent=2, ensure_ascii=False))
        return done.exit_code
    _note(str(done.failure))
    if done.diagnosis is not None:
        from mmops.diagnose.report import render as render_incident
        from mmops.term import use_color

        _note(f"what the log says (mmops diagnose {done.log}):")
        print(render_incident(done.diagnosis, color=use_color(sys.stdout)))
    _note(f"record: {done.run_dir}")
    return done.exit_code


def _note(text: str) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        print(f"mmops: {text}", file=sys.stderr, flush=True)


def _check_typos(vllm_argv: list[str]) -> None:
    """A misspelt offline flag would reach LLM() as an unknown argument after the engine's
    imports; say so now instead."""
    import difflib

    from mmops.launch import flags as vllm_flags

    for token in vllm_argv:
        if not token.startswith("--"):
            continue
        name = vllm_flags.canonical(token.split("=", 1)[0])
        if name in vllm_flags.KNOWN_FLAGS:
            continue
        close = difflib.get_close_matches(name, OWN_FLAGS, n=1, cutoff=0.8)
        if close:
            raise UsageError(f"unknown flag --{name}; did you mean --{close[0]}?")
