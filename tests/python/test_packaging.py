"""The source distribution a user installs from holds everything the build needs."""
import os
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_sdist_holds_every_source(tmp_path):
    # The CUDA sources and all headers too, even when the sdist is made on a
    # machine whose own build would be CPU only (as this one may be).
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path),
                    "sdist", "--dist-dir", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "TCONV3D_FORCE_CUDA": "0"})
    (archive,) = tmp_path.glob("tconv3d-*.tar.gz")
    with tarfile.open(archive) as tar:
        packed = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    wanted = {"setup.py", "pyproject.toml", "README.md"}
    for top in ("csrc", "python/tconv3d"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            wanted |= {os.path.relpath(os.path.join(folder, f), ROOT) for f in files
                       if f.endswith((".h", ".cuh", ".cu", ".cpp", ".py"))}
    assert any(name.endswith(".cu") for name in wanted)
    missing = sorted(wanted - packed)
    assert not missing, f"the sdist lacks {missing}"
