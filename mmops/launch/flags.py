"""What mmops knows of `vllm serve` flags: names, types, and how to read them from argv.

vLLM has hundreds of flags and adds more each release, so unknown flags pass through untouched;
the ones below are those whose values mmops checks or plans with. Names are canonical
(dashes, no leading ``--``); ``--max_model_len`` and ``--max-model-len`` both work in vLLM
(its FlexibleArgumentParser maps underscores to dashes), so we do the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmops.errors import UsageError

INT_FLAGS = frozenset(
    {
        "max-model-len",
        "max-num-seqs",
        "max-num-batched-tokens",
        "tensor-parallel-size",
        "pipeline-parallel-size",
        "data-parallel-size",
        "block-size",
        "port",
        "seed",
        "max-logprobs",
        "swap-space",
    }
)
FLOAT_FLAGS = frozenset({"gpu-memory-utilization"})
BOOL_FLAGS = frozenset(
    {
        "trust-remote-code",
        "enforce-eager",
        "enable-prefix-caching",
        "no-enable-prefix-caching",
        "enable-chunked-prefill",
        "no-enable-chunked-prefill",
        "disable-log-requests",
        "disable-log-stats",
        "enable-sleep-mode",
        "disable-mm-preprocessor-cache",
        "enable-auto-tool-choice",
    }
)
STR_FLAGS = frozenset(
    {
        "model",
        "served-model-name",
        "dtype",
        "host",
        "chat-template",
        "tokenizer",
        "api-key",
        "distributed-executor-backend",
        "limit-mm-per-prompt",
        "mm-processor-kwargs",
        "kv-cache-dtype",
        "quantization",
        "device",
        "tool-call-parser",
        "compilation-config",
        "additional-config",
        "hf-overrides",
        "generation-config",
    }
)
KNOWN_FLAGS = INT_FLAGS | FLOAT_FLAGS | BOOL_FLAGS | STR_FLAGS
# Flags whose value is a secret: masked in plans, events and logs mmops writes.
SECRET_FLAGS = frozenset({"api-key"})
# Old spelling -> current spelling, applied when reading user input.
ALIASES = {
    "max-seq-len": "max-model-len",
    "tp": "tensor-parallel-size",
    "tp-size": "tensor-parallel-size",
}

DTYPES = ("auto", "float16", "bfloat16", "half", "float", "float32")
# Valid values (lowest, highest; None: no bound), as vLLM's own checks have them: a zero or
# negative count passed type checks and then failed minutes into the launch, or crashed us.
RANGES: dict[str, tuple[int | None, int | None]] = {
    "max-model-len": (1, None),
    "max-num-seqs": (1, None),
    "max-num-batched-tokens": (1, None),
    "tensor-parallel-size": (1, None),
    "pipeline-parallel-size": (1, None),
    "data-parallel-size": (1, None),
    "block-size": (1, None),
    "port": (1, 65535),
    "seed": (0, 2**32 - 1),  # numpy's seed range, which vLLM's set_random_seed uses
    "max-logprobs": (-1, None),  # -1: no cap
    "swap-space": (0, None),
}


def canonical(name: str) -> str:
    name = name.lstrip("-").replace("_", "-")
    return ALIASES.get(name, name)


def near_miss(name: str) -> str | None:
    """A known flag this unknown ``name`` is probably a typo of, if any."""
    if name in KNOWN_FLAGS:
        return None
    import difflib  # only on an unknown flag: keeps doctor's start-up lean

    close = difflib.get_close_matches(name, sorted(KNOWN_FLAGS), n=1, cutoff=0.85)
    return close[0] if close else None


def coerce(name: str, value: Any, source: str) -> Any:
    """Type-check one flag value; ``source`` names where it came from for the error."""
    try:
        if name in INT_FLAGS:
            if isinstance(value, bool):
                raise ValueError
            out = int(value)
            if isinstance(value, float) and value != out:
                raise ValueError
            return _check_range(name, out, source)
        if name in FLOAT_FLAGS:
            if isinstance(value, bool):
                raise ValueError
            return _check_range(name, float(value), source)
        if name in BOOL_FLAGS:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", ""):
                return True
            if text in ("false", "0", "no"):
                return False
            raise ValueError
    except (TypeError, ValueError, OverflowError):  # OverflowError: a YAML .inf
        kind = (
            "an integer"
            if name in INT_FLAGS
            else "a number"
            if name in FLOAT_FLAGS
            else "true/false"
        )
        raise UsageError(f"{source}: --{name} expects {kind}, got {value!r}") from None
    if name == "dtype" and str(value) not in DTYPES:
        raise UsageError(f"{source}: --dtype must be one of {', '.join(DTYPES)}; got {value!r}")
    return value


def _check_range(name: str, value: Any, source: str) -> Any:
    """Out-of-range numbers are bad input, said at once (vLLM rejects them only after start)."""
    if name == "gpu-memory-utilization" and not 0 < value <= 1:  # NaN fails this too
        raise UsageError(
            f"{source}: --{name} must be above 0 and at most 1 (a fraction of each device's "
            f"memory); got {value}"
        )
    low, high = RANGES.get(name, (None, None))
    if (low is not None and value < low) or (high is not None and value > high):
        valid = f"from {low} to {high}" if high is not None else f"at least {low}"
        hint = ""
        if name == "max-model-len" and value == -1:
            hint = " (vLLM's -1/auto is not planned by mmops: give a length; doctor says what fits)"
        raise UsageError(f"{source}: --{name} must be {valid}; got {value}{hint}")
    return value


def parse_argv(argv: Sequence[str], source: str = "command line") -> dict[str, Any]:
    """Read `vllm serve`-style flags from argv into {canonical name: value}.

    ``--flag=value``, ``--flag value`` and bare boolean flags are accepted. A value-less
    unknown flag (followed by another flag or nothing) is taken as boolean true.
    """
    out: dict[str, Any] = {}
    i = 0
    argv = list(argv)
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or token == "--":
            raise UsageError(
                f"{source}: unexpected argument {token!r}; vLLM flags look like --max-model-len 4096"
            )
        name, eq, value = token[2:].partition("=")
        name = canonical(name)
        if not name:
            raise UsageError(f"{source}: empty flag {token!r}")
        guess = near_miss(name)
        if guess is not None:
            raise UsageError(f"{source}: unknown flag --{name}; did you mean --{guess}?")
        if eq:
            out[name] = coerce(name, value, source)
        elif name in BOOL_FLAGS:
            out[name] = True
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            i += 1
            out[name] = coerce(name, argv[i], source)
        elif name in KNOWN_FLAGS:
            raise UsageError(f"{source}: --{name} needs a value")
        else:
            out[name] = True
        i += 1
    return out


def to_argv(args: dict[str, Any]) -> list[str]:
    """Flags back to argv, in the given order; booleans as bare flags, False omitted."""
    out: list[str] = []
    for name, value in args.items():
        if value is False or value is None:
            continue
        if value is True:
            out.append(f"--{name}")
        elif isinstance(value, (dict, list)):
            import json

            out += [f"--{name}", json.dumps(value, separators=(",", ":"))]
        else:
            out += [f"--{name}", str(value)]
    return out
