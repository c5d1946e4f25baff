"""vLLM's start-up as a sequence of phases, read from its log as it comes: "is it stuck, and where?"

A start goes through ``PHASES`` in order: arguments, platform, model config, weights, memory
profiling, KV cache, graph capture, API server, ready. Each phase is known by a few log lines,
kept as data in ``_RULES`` (one row per line shape, with where the shape was seen). Lines carry
prefixes (``(EngineCore_DP0 pid=12) INFO 12-04 05:01:02 [loader.py:12] ``): rules search, they
are not anchored.

``PhaseTracker.feed`` takes blocks of complete lines as they arrive (the supervisor hands it every
64 KiB block, floods included). A block is searched with ONE compiled alternation holding a
literal of each rule that can still move the start forward (rules of phases already passed drop
out as it advances); each literal enters at its rarest character, so the regex engine tries few
positions. A flood of lines that say nothing about start-up costs that one scan; only the lines
it stops at are matched against the rules. Progress never goes backwards: a line of an earlier
phase (vLLM logs "detected platform" again in each process it spawns, and "Uvicorn running on"
after "Application startup complete") is ignored, and so is everything after ``ready``.

Failure frames count too: when the start dies, the traceback names the step that failed
(``determine_available_memory``, ``get_kv_cache_configs``, ``capture_model``), so the tracker
stops at the phase where it failed, not the one before.

Order caveats seen in real logs: vLLM 0.7-0.9 logs "Automatically detected platform" before the
arguments (vllm-project/vllm#12529), so ``args`` is skipped there; torch.compile runs inside
memory profiling, before the KV cache is sized (vllm-project/vllm#36634, kubernetes-sigs/
gateway-api-inference-extension#550), so its lines belong to ``profiling``, not ``graph``; vLLM
0.32 binds the API port before it builds the engine, so a taken port fails right after ``args``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

PHASES: tuple[tuple[str, str], ...] = (
    ("args", "parsing arguments"),
    ("platform", "detecting the platform"),
    ("config", "resolving the model config"),
    ("workers", "starting workers and their communicators"),
    ("weights", "loading weights"),
    ("profiling", "profiling memory"),
    ("kv_cache", "allocating the KV cache"),
    ("graph", "capturing graphs"),
    ("api", "starting the API server"),
    ("ready", "ready"),
    ("serving", "serving requests"),
)
_INDEX = {pid: i for i, (pid, _) in enumerate(PHASES)}
# Start-up proper: up to ready (serving comes after; a start-up progress display stops at ready).
STARTUP_PHASES = PHASES[: _INDEX["ready"] + 1]
_TITLE = dict(PHASES)
_LAST = len(PHASES) - 1
# Escape sequences only: logread.strip_ansi also takes bare "[m" remnants, which eats "[model.py".
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class PhaseHit:
    """A log line that moved the start forward: its phase, and what it says about it."""

    phase: str  # one of PHASES ids
    title: str  # human words, e.g. "loading weights"
    detail: str  # e.g. "shard 1/2", "2,097,152 tokens", "" when none
    progress: tuple[int, int] | None  # (i, n) for weight shards, else None
    line: str  # the log line (stripped)


@dataclass(frozen=True)
class _Rule:
    phase: str
    pattern: str  # searched in one line; named groups feed ``detail``
    detail: str = ""  # str.format over the named groups; group "bytes" is shown in GiB
    # Literals a matching line holds one of (what the pre-filter looks for); by default the
    # literal text the pattern starts with.
    needs: tuple[str, ...] = ()


def _frame(phase: str, *functions: str) -> _Rule:
    """A traceback frame in one of ``functions``: the start failed in that step of ``phase``."""
    names = "|".join(functions)
    needs = tuple(f", in {f}" for f in functions)
    return _Rule(phase, rf'File "[^"\n]*", line \d+, in (?:{names})\b', needs=needs)


# Sources: "real-cpu" = tests/fixtures/logs/real-cpu/ (vLLM 0.32.0 CPU, captured here);
# "corpus NNN" = tests/fixtures/logs/corpus/ (sources in MANIFEST.yaml); "notes" =
# /work/shared/notes/failure-signatures.md; other names are public issue threads quoting the line.
_RULES: tuple[_Rule, ...] = (
    # -- args
    # real-cpu banner "█▄█▀ ... █  version 0.32.0"; vllm-project/vllm#30515 (0.17)
    _Rule("args", r"█  version (?P<v>\S+)", "vLLM {v}"),
    # vllm-project/vllm#12529: "vLLM API server version 0.7.4.dev390+gdebd6bbf0" (0.7-0.8)
    _Rule("args", r"vLLM API server version (?P<v>\S+)", "vLLM {v}"),
    # real-cpu "[api_utils.py:286] non-default args: {...}"; vllm-project/vllm#30515
    _Rule("args", r"non-default args: "),
    # vllm-project/vllm#12529, #17386: "[api_server.py:913] args: Namespace(subparser='serve', ..."
    _Rule("args", r"args: Namespace\("),
    # -- platform
    # vllm-project/vllm#12529: "[__init__.py:256] Automatically detected platform cuda."
    _Rule("platform", r"Automatically detected platform (?P<p>\w+)", "{p}"),
    # vllm-project/vllm-ascend#8898: "Platform plugin ascend is activated"
    _Rule("platform", r"Platform plugin (?P<p>\w+) is activated", "{p}"),
    # vllm-project/vllm#16724, #23967: "No platform detected, vLLM is running on UnspecifiedPlatform"
    _Rule("platform", r"No platform detected", "none detected"),
    # -- config
    # real-cpu "[model.py:733] Resolved architecture: Qwen2_5_VLForConditionalGeneration"
    _Rule("config", r"Resolved architecture: (?P<arch>\w+)", "{arch}"),
    # vLLM 0.7-0.9 config.py, e.g. vllm-ascend 0.7.1's sample output in its docs: "[config.py:526]
    # This model supports multiple tasks: {'embed', ..., 'generate'}. Defaulting to 'generate'."
    _Rule("config", r"This model supports multiple tasks"),
    # real-cpu "[model.py:2152] Using max model len 2048"
    _Rule("config", r"Using max model len (?P<n>\d+)", "max model len {n}"),
    # real-cpu "Initializing a V1 LLM engine (v0.32.0) with config: ..."; vllm-project/
    # vllm-ascend#2210 (V1, v0.9.2); V0 says "Initializing an LLM engine (v0.6.3) with config"
    _Rule("config", r"LLM engine \(v[^)]{1,40}\) with config"),
    # A traceback through EngineArgs.create_model_config: real-cpu max-model-len-rejected.log and
    # trust-remote-code-missing.log (the model config was refused).
    _frame("config", "create_model_config"),
    # -- workers: the executor starts its workers (local processes or Ray actors, joining the
    # Ray cluster first) and they open their communicators (NCCL / HCCL / gloo) before loading.
    # real-cpu "[multiproc_executor.py:153] DP group leader: node_rank=0, ..." (0.32)
    _Rule("workers", r"DP group leader: "),
    # vllm/distributed/parallel_state.py init_distributed_environment (debug level)
    _Rule(
        "workers",
        r"world_size=(?P<w>\d+) rank=\d+ local_rank=\d+ distributed_init_method",
        "world size {w}",
    ),
    # ray/_private/worker.py (vLLM's Ray executor joining the cluster); `ray start` on a node
    _Rule("workers", r"Connecting to existing Ray cluster at address", "joining the Ray cluster"),
    _Rule("workers", r"Ray runtime started", "Ray node started"),
    # a readiness probe's view of the Ray cluster (vllm-project/production-stack#653)
    _Rule(
        "workers",
        r"Ray cluster status: (?P<a>\d+)/(?P<n>\d+) nodes alive",
        "Ray: {a}/{n} nodes alive",
    ),
    # NCCL communicator set-up in the workers (tests/fixtures/logs/ray/024, vllm#16318)
    _Rule("workers", r"NCCL INFO (?:ncclCommInitRank|Bootstrap|Channel \d+)", "NCCL set-up"),
    # -- weights
    # real-cpu "[cpu_model_runner.py:68] Starting to load model /root/.cache/.../qwen2_5_vl..."
    _Rule("weights", r"Starting to load model"),
    # real-cpu "Loading safetensors checkpoint shards: 100% Completed | 1/1 [00:00<00:00, ...]";
    # vllm-project/vllm-ascend#2125 "...  62% Completed | 10/16"; vllm-project/vllm#38820 "5/9"
    _Rule(
        "weights",
        r"checkpoint shards:\s*\d+% Completed \| (?P<i>\d+)/(?P<n>\d+)",
        "shard {i}/{n}",
    ),
    # real-cpu "[default_loader.py:501] Loading weights took 0.02 seconds"
    _Rule("weights", r"Loading weights took (?P<s>[\d.]+) seconds", "took {s} s"),
    # corpus 001 (vllm-ascend 0.7.1 V0) "Loading model weights took 0.0000 GB"; vllm#6234
    _Rule("weights", r"Loading model weights took (?P<x>[\d.]+) GB", "{x} GB"),
    # vllm-project/vllm#12529 "Model loading took 3.3414 GB and 0.742108 seconds" (V0);
    # vllm-project/vllm#38820 "Model loading took 12.66 GiB memory and 31.657031 seconds" (V1)
    _Rule("weights", r"Model loading took (?P<x>[\d.]+) (?P<u>GiB|GB)", "{x} {u}"),
    # The start failed loading weights: a traceback through the worker's load_model (vllm-project/
    # vllm#18577, V1 gpu_worker.py), or V0's multiproc report (vllm#14095, vllm-ascend#19):
    # "Exception in worker VllmWorkerProcess while processing method load_model."
    _frame("weights", "load_model"),
    _Rule("weights", r"while processing method load_model\b"),
    # -- profiling
    # real-cpu "[cpu_model_runner.py:87] Warming up model for the compilation..."
    _Rule("profiling", r"Warming up model for the compilation"),
    # vllm-project/vllm#38820 "[backends.py:1128] Dynamo bytecode transform time: 3.54 s"
    _Rule("profiling", r"Dynamo bytecode transform time"),
    # kubernetes-sigs/gateway-api-inference-extension#550 "torch.compile takes 28.77 s in total"
    # (V0); vllm-project/vllm#36634 "torch.compile took 1.71 s in total" (V1)
    _Rule(
        "profiling", r"torch\.compile t(?:akes|ook) (?P<s>[\d.]+) s in total", "torch.compile {s} s"
    ),
    # real-cpu "[monitor.py:91] [backbone] Initial profiling/warmup run took 0.33 s"; vllm#36634
    _Rule("profiling", r"Initial profiling/warmup run took (?P<s>[\d.]+) s", "warm-up run {s} s"),
    # vllm-project/vllm#12529, gateway-api-inference-extension#550: "Memory profiling takes 0.60
    # seconds" (V0 worker.py)
    _Rule("profiling", r"Memory profiling takes (?P<s>[\d.]+) seconds", "took {s} s"),
    # corpus 006 (V0): "Memory profiling results: total_gpu_memory=23.58GiB ... kv_cache_size=2.89GiB"
    _Rule(
        "profiling",
        r"Memory profiling results: [^\n]*?kv_cache_size=(?P<x>-?[\d.]+)GiB",
        "{x} GiB for KV cache",
    ),
    # vllm-project/vllm#12529: "... the rest of the memory reserved for KV Cache is 2.20GiB."
    _Rule(
        "profiling",
        r"the rest of the memory reserved for KV Cache is (?P<x>-?[\d.]+) ?GiB",
        "{x} GiB for KV cache",
    ),
    # gpustack/runner#251, vllm-project/vllm-ascend#9691: "[gpu_worker.py:563] Available KV cache
    # memory: 6.87 GiB" (V1)
    _Rule("profiling", r"Available KV cache memory: (?P<x>-?[\d.]+) GiB", "{x} GiB for KV cache"),
    # corpus 055 / vllm-ascend 0.11 worker_v1.py (notes): "Available memory: 0, total memory:
    # 65452113920" (bytes)
    _Rule(
        "profiling",
        r"Available memory: (?P<bytes>-?\d+), total memory: \d+",
        "{bytes} GiB for KV cache",
    ),
    # real-cpu "[cpu_worker.py:260] Explicitly set (1.0/14.34) GiB for KV cache on node 0."
    _Rule(
        "profiling",
        r"Explicitly set \((?P<x>[\d.]+)/[\d.]+\) GiB for KV cache",
        "{x} GiB for KV cache",
    ),
    # The start failed profiling: tracebacks through V1 determine_available_memory (vllm-project/
    # vllm#29636: "[abstract.py] line 126, in determine_available_memory"), V0
    # determine_num_available_blocks, the model runners' profile_run; V0's reports of the failed
    # worker method: vllm-project/vllm-ascend#1007 "Error executing method
    # 'determine_num_available_blocks'" (Ray), vllm-project/vllm#8903 "Exception in worker
    # VllmWorkerProcess while processing method determine_num_available_blocks: CUDA out of ..."
    # (multiproc).
    _frame(
        "profiling", "determine_available_memory", "determine_num_available_blocks", "profile_run"
    ),
    _Rule(
        "profiling", r"Error executing method 'determine_(?:available_memory|num_available_blocks)'"
    ),
    _Rule("profiling", r"while processing method determine_num_available_blocks\b"),
    # -- kv_cache
    # real-cpu "CPU KV cache size: 2,097,152 tokens, Maximum concurrency ..." (0.32); notes:
    # "GPU KV cache size: 182,784 tokens" (0.11, vllm-ascend#3479), "NPU KV cache size" (0.33)
    _Rule("kv_cache", r"KV cache size: (?P<n>[\d,]+) tokens", "{n} tokens"),
    # V0 and V1 up to 0.7: corpus 006 "# GPU blocks: 1478, # CPU blocks: 2048"; corpus 001
    # "# CPU blocks: 12486, # CPU blocks: 1170"; vllm-ascend#397 "# npu blocks: 3915, # CPU
    # blocks: 910"; vllm#12529 "# cuda blocks: 5148, # CPU blocks: 9362". The second count on the
    # line is swap space, not the KV cache: consumed here so it is not read as a second hit.
    _Rule(
        "kv_cache", r"# (?P<dev>\w+) blocks: (?P<n>\d+)(?:, # CPU blocks: \d+)?", "{n} {dev} blocks"
    ),
    # Tracebacks through the KV cache sizing: real-cpu kv-cache-too-small.log and corpus 007/010
    # (V1 get_kv_cache_configs -> _check_enough_kv_cache_memory), corpus 009 (V0
    # raise_if_cache_size_invalid).
    _frame(
        "kv_cache",
        "get_kv_cache_configs",
        "get_kv_cache_config",
        "_check_enough_kv_cache_memory",
        "raise_if_cache_size_invalid",
    ),
    # -- graph
    # mellea#416, vllm-project/vllm#14452: "Capturing cudagraphs for decoding. This may lead ..." (V0)
    _Rule("graph", r"Capturing cudagraphs"),
    # vllm-project/vllm#6234: "Capturing the model for CUDA graphs. This may lead ..." (older V0)
    _Rule("graph", r"Capturing the model for CUDA graphs"),
    # vllm-project/vllm#11349: "Capturing CUDA graph shapes: 100%|...| 35/35" (V0 tqdm)
    _Rule("graph", r"Capturing CUDA graph shapes"),
    # corpus 002 "Capturing CUDA graphs (PIECEWISE): 14%|..."; aivrar/vllm-windows-build#4
    # "Capturing CUDA graphs (mixed prefill-decode, PIECEWISE)"; vllm-project/vllm-ascend#4807
    # "Capturing ACL graphs (mixed prefill-decode, PIECEWISE)"; "Capturing prefill CUDA graphs
    # (FULL)" (aivrar/vllm-windows-build#17)
    _Rule("graph", r"Capturing CUDA graphs \((?P<mode>[^)]{1,80})\)", "{mode}"),
    _Rule("graph", r"Capturing ACL graphs \((?P<mode>[^)]{1,80})\)", "{mode}"),
    _Rule("graph", r"Capturing prefill CUDA graphs \((?P<mode>[^)]{1,80})\)", "prefill, {mode}"),
    # vllm-project/vllm-ascend#3508: "Starting to capture ACL graphs for cases: [512, ...]"
    _Rule("graph", r"Starting to capture ACL graphs"),
    # vllm-project/vllm#11349, vllm-ascend#4807: "Graph capturing finished in 22 secs, took 0.26
    # GiB"; older lines end after the seconds.
    _Rule(
        "graph",
        r"Graph capturing finished in (?P<s>\d+) secs?, took (?P<x>-?[\d.]+) GiB",
        "finished in {s} s, {x} GiB",
    ),
    _Rule("graph", r"Graph capturing finished in (?P<s>\d+) sec", "finished in {s} s"),
    # The start failed capturing graphs: a traceback through the model runner's capture_model
    # (nlzy/vllm-gfx906#44: "[gpu_model_runner.py] line 2691, in capture_model", V1 0.10).
    _frame("graph", "capture_model"),
    # -- api
    # real-cpu "[entry.py:140] Starting vLLM server on http://127.0.0.1:49339" (0.32); notes:
    # "Starting vLLM API server on http://..." (0.7.3), "Starting vLLM API server 0 on ..." (0.11)
    _Rule("api", r"Starting vLLM server on (?P<url>\S+)", "{url}"),
    _Rule("api", r"Starting vLLM API server(?: \d+)? on (?P<url>\S+)", "{url}"),
    # A traceback through create_server_socket: vLLM 0.32 binds the API port before it builds the
    # engine (real-cpu port-in-use.log), so a taken port fails the start here, right after args.
    _frame("api", "create_server_socket"),
    # real-cpu "[launcher.py:186] Available routes are:"; vllm-project/vllm#38820
    _Rule("api", r"Available routes are"),
    # The route listing itself (vllm-ascend#2630, vllm-project/vllm#16361: "[launcher.py:46]
    # Route: /v1/chat/completions, Methods: POST"): printed once the engine is up.
    _Rule("api", r"Route: /\S*, Methods: "),
    # real-cpu, corpus 026/045 (uvicorn): "Started server process [11056]",
    # "Waiting for application startup."
    _Rule("api", r"Started server process"),
    _Rule("api", r"Waiting for application startup"),
    # corpus 045: "Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)"; uvicorn prints
    # it after "Application startup complete.", and only when it binds the port itself (notes).
    _Rule("api", r"Uvicorn running on (?P<url>\S+)", "{url}"),
    # -- ready
    # real-cpu, corpus 026/045 (uvicorn): "Application startup complete."
    _Rule("ready", r"Application startup complete"),
    # -- serving: the server took or answered requests (a log may start here, mid-serve)
    # V0/V1 engine lines (vllm-project/vllm#16361; kserve's vLLM runtime logs the same):
    # "Received request chatcmpl-...", "Added request chatcmpl-...", the stats line
    # "Avg prompt throughput: 2.4 tokens/s, Avg generation throughput: ..."
    _Rule("serving", r"Received request (?:chatcmpl|cmpl|embd)-"),
    _Rule("serving", r"Added request (?:chatcmpl|cmpl|embd)-"),
    _Rule("serving", r"Avg prompt throughput: "),
    # A uvicorn access line for a model endpoint: the API answered a client (any status: a 400
    # is an answer too). /health and /metrics are the prober's, not a client's.
    _Rule(
        "serving",
        r'"POST /\S*v1/(?:chat/completions|completions|embeddings|responses) HTTP/1\.[01]" [1-5]\d\d',
        needs=("completions HTTP/1.", "embeddings HTTP/1.", "responses HTTP/1."),
    ),
)


# Characters of vLLM logs, most common first (counted over tests/fixtures/logs/); any other
# character is rarer than all of these.
_BY_FREQUENCY = (
    " erointasplc1:d_u0m/.2h5gyv9,34-=^f78'I6]k([FON)bRPEwASTCxMW\"LD`GUqzVHBK<{}*>|j%;QYX?!Z+\\#J&"
)
_RARITY = {ch: i for i, ch in enumerate(_BY_FREQUENCY)}


def _literal_head(pattern: str) -> str:
    """The literal text every match of ``pattern`` starts with."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1 : i + 2]
            if not nxt or nxt.isalnum():  # \d, \w, \b ...: a class, not a character
                break
            ch, step = nxt, 2
        elif ch in ".^$*+?{}[]|()":
            break
        else:
            step = 1
        if pattern[i + step : i + step + 1] in ("?", "*", "{"):  # this character may be absent
            break
        out.append(ch)
        i += step
    return "".join(out)


def _gates(rule: _Rule) -> tuple[str, ...]:
    """What the pre-filter looks for: each needed literal from its rarest character on (with 8+
    characters left where the literal has them)."""
    out = []
    for lit in rule.needs or (_literal_head(rule.pattern),):
        if len(lit) < 2:
            raise ValueError(f"a phase rule needs a literal of 2+ characters: {rule.pattern!r}")
        spots = range(max(1, len(lit) - 7))
        at = max(spots, key=lambda i: (_RARITY.get(lit[i], len(_RARITY)), -i))
        out.append(lit[at:])
    return tuple(out)


class _Search(NamedTuple):
    regex: re.Pattern[str]  # finds any gate; the named group that matched says which
    rules: dict[str, tuple[_Rule, ...]]  # group name -> the rules that gate may belong to


def _trie(gates: dict[str, str]) -> str:
    """A regex for ``gates`` (gate -> group name) with shared prefixes factored out, so at any
    position the engine compares each character once; an empty named group marks each end."""
    root: dict = {}
    for gate, name in gates.items():
        node = root
        for ch in gate:
            node = node.setdefault(ch, {})
        node[""] = name

    def emit(node: dict) -> str:
        alts = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if "" in node:  # after the longer gates: the longest gate at a spot is the one found
            alts.append(f"(?P<{node['']}>)")
        return alts[0] if len(alts) == 1 else f"(?:{'|'.join(alts)})"

    # One top-level branch per first character, each starting with that literal character.
    return "|".join(re.escape(ch) + emit(child) for ch, child in sorted(root.items()))


def _search(rules: Iterable[_Rule]) -> _Search:
    """ONE regex finding the gates of ``rules``.

    Every top-level branch starts with a literal, so the regex engine skips each position whose
    character starts no gate with a set test; gates start at rare characters, so few positions
    are tried, and shared prefixes are compared once.
    """
    by_gate: dict[str, list[_Rule]] = {}
    for rule in rules:
        for gate in _gates(rule):
            by_gate.setdefault(gate, []).append(rule)
    names = {gate: f"g{i}" for i, gate in enumerate(sorted(by_gate))}
    rules_of: dict[str, tuple[_Rule, ...]] = {}
    for gate, name in names.items():
        # The longest gate at a spot is found: it brings the rules of the gates it starts with.
        found = {r for g, rs in by_gate.items() if gate.startswith(g) for r in rs}
        rules_of[name] = tuple(r for r in _RULES if r in found)
    return _Search(re.compile(_trie(names)), rules_of)


_COMPILED = {r: re.compile(r.pattern) for r in _RULES}
_ORDER = {r: i for i, r in enumerate(_RULES)}
# Per phase index k: a search for the rules of phase k and later (what can still move the start
# forward).
_SEARCH = tuple(_search(r for r in _RULES if _INDEX[r.phase] >= k) for k in range(len(PHASES)))


def _line_bounds(text: str, at: int) -> tuple[int, int]:
    """Start and end of the line holding text[at]; CR ends a line too (tqdm bars, CRLF logs)."""
    lo = max(text.rfind("\n", 0, at), text.rfind("\r", 0, at)) + 1
    hi = len(text)
    for sep in ("\n", "\r"):
        end = text.find(sep, at)
        if 0 <= end < hi:
            hi = end
    return lo, hi


def _detail(rule: _Rule, m: re.Match[str]) -> str:
    if not rule.detail:
        return ""
    groups = m.groupdict()
    if groups.get("bytes") is not None:
        groups["bytes"] = f"{int(groups['bytes']) / 2**30:.2f}"
    return rule.detail.format(**groups)


def _line_hits(line: str, rules: Iterable[_Rule]) -> list[PhaseHit]:
    """What ``line`` says about start-up, in the order it says it (one rule per position)."""
    found: dict[int, tuple[_Rule, re.Match[str]]] = {}
    for rule in sorted(rules, key=_ORDER.__getitem__):
        m = _COMPILED[rule].search(line)
        if m is not None and m.start() not in found:  # table order: the first rule wins
            found[m.start()] = (rule, m)
    if not found:
        return []
    shown = (_ANSI.sub("", line) if "\x1b" in line else line).strip()
    hits = []
    for _, (rule, m) in sorted(found.items()):
        groups = m.groupdict()
        progress = None
        if groups.get("i") is not None and groups.get("n") is not None:
            progress = (int(groups["i"]), int(groups["n"]))
        hits.append(PhaseHit(rule.phase, _TITLE[rule.phase], _detail(rule, m), progress, shown))
    return hits


def phase_index(phase: str) -> int:
    """The place of a phase id in PHASES (start-up order)."""
    return _INDEX[phase]


class PhaseTracker:
    """Follows one start-up through ``PHASES``: feed it the log as it comes; it only moves forward.

    One tracker per attempt: a restarted server starts a new tracker.
    """

    def __init__(self) -> None:
        self._current: PhaseHit | None = None
        self._index = -1  # of the current phase in PHASES

    @property
    def current(self) -> PhaseHit | None:
        """The furthest point reached so far (None before any phase line)."""
        return self._current

    @property
    def done(self) -> bool:
        """The start reached its last phase: nothing more to read."""
        return self._index >= _LAST

    def feed(self, text: str) -> list[PhaseHit]:
        """Read a block of one or more complete lines; return the hits that moved progress
        forward (a new phase, or new shard progress or detail within the current one)."""
        if self._index >= _LAST:
            return []
        hits: list[PhaseHit] = []
        k = max(self._index, 0)
        search, rules_of = _SEARCH[k]
        pos = 0
        while (m := search.search(text, pos)) is not None:
            lo, hi = _line_bounds(text, m.start())
            assert m.lastgroup is not None  # every gate ends in a named group (see _trie)
            rules = set(rules_of[m.lastgroup])
            while (m := search.search(text, m.start() + 1, hi)) is not None:  # more on the line
                assert m.lastgroup is not None
                rules.update(rules_of[m.lastgroup])
            pos = hi + 1
            for hit in _line_hits(text[lo:hi], rules):
                moved = self._advance(hit)
                if moved is not None:
                    hits.append(moved)
            if self._index >= _LAST:
                break
            if self._index > k:  # rules of passed phases drop out of the search
                k = self._index
                search, rules_of = _SEARCH[k]
        return hits

    def _advance(self, hit: PhaseHit) -> PhaseHit | None:
        """Take ``hit`` if it moves the start forward; the new current point, or None."""
        index = _INDEX[hit.phase]
        cur = self._current
        if cur is None or index > self._index:
            self._current, self._index = hit, index
            return hit
        if index < self._index:
            return None
        if hit.progress is not None:
            if cur.progress is not None:
                (i, n), (ci, cn) = hit.progress, cur.progress
                if i * cn <= ci * n:  # not further along (another rank's bar, a repeat)
                    return None
            self._current = hit
            return hit
        if not hit.detail or hit.detail == cur.detail:
            return None
        # New detail within the phase: the shard progress reached so far stays.
        self._current = PhaseHit(hit.phase, hit.title, hit.detail, cur.progress, hit.line)
        return self._current


def last_phase(lines: Iterable[str]) -> PhaseHit | None:
    """The furthest start-up phase ``lines`` reach (None if they show none)."""
    tracker = PhaseTracker()
    batch: list[str] = []
    size = 0
    for line in lines:
        batch.append(line)
        size += len(line)
        if size >= 65536:
            tracker.feed("\n".join(batch))
            batch, size = [], 0
            if tracker._index >= _LAST:
                break
    if batch:
        tracker.feed("\n".join(batch))
    return tracker.current
