"""The backends.gguf face: every name it lists resolves, and the torch-heavy layer streamer is
imported only when one of its names is first used."""

from __future__ import annotations

import subprocess
import sys

import backends.gguf as face


def test_every_listed_name_resolves() -> None:
    import backends.gguf.layers as layers

    for name in face.__all__:
        assert getattr(face, name) is not None, name
    for name in face._LAYERS:
        assert getattr(face, name) is getattr(layers, name)


def test_the_face_does_not_import_torch_until_a_layer_name_is_used() -> None:
    code = ("import sys, backends.gguf as g; a = 'torch' in sys.modules; g.Sweep; "
            "print(a, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]
