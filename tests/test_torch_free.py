"""Bad input is answered without importing torch (issue 13): validating archs, reading the module registry,
loading a search space."""

import subprocess
import sys
import textwrap

from conftest import REPO


def _run(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_validating_archs_and_reading_the_registry_import_no_torch():
    r = _run("""
        import sys
        import nas_attn
        from nas_attn.arch import Arch, Placement
        from nas_attn import ArchError, complexity, build_model
        for backbone in ("mobilenetv2", "resnet50", "wrn28_10", "densenet121", "drn_c_26", "resnext29_8x64d"):
            Arch(backbone, num_classes=10, input_size=32, small_input=True,
                 placements=[Placement(2, "csm", "insert", args={"order": "spatial-first"})]).validate()
        Arch("resnet50", variant="v1", placements=[Placement(4, "la", "parallel")]).validate()
        for bad in ({"backbone": "resnet18", "placements": [{"position": 1, "module": "nonlocal"}]},
                    {"backbone": "resnet18", "placements": [{"position": 1, "module": "se", "args": {"r": 2}}]}):
            try:
                Arch.from_dict(bad).validate()
                raise SystemExit("accepted " + str(bad))
            except ArchError as exc:
                print(exc)
        for fn in (complexity, build_model):  # an invalid arch is refused before torch is imported
            try:
                fn(Arch("resnet18", placements=[Placement(9, "se")]))
                raise SystemExit("accepted position 9")
            except ArchError:
                pass
        entry = nas_attn.modules.get_entry("csm")
        assert entry.max_positions == 1024 and entry.options == ("reduction", "key_reduction", "order")
        print("torch" in sys.modules)
    """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "over its limit of 1024" in lines[0] and "unknown option(s) r" in lines[1]
    assert lines[-1] == "False"


def test_loading_the_papers_spaces_imports_no_torch():
    r = _run("""
        import sys
        from nas_attn.space import load_space
        for name in ("ladnet_drn", "lgam_cifar", "lgam_wrn", "csm_resnet"):
            load_space(name)
        print("torch" in sys.modules)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
