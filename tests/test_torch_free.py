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
                    {"backbone": "resnet18", "placements": [{"position": 1, "module": "se", "args": {"r": 2}}]},
                    {"backbone": "resnet18", "placements": [{"position": 1, "module": "csm",
                                                             "args": {"order": "sideways"}}]}):
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
    assert "order must be one of channel-first, spatial-first" in lines[2]
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


def test_the_search_driver_refuses_bad_input_and_a_locked_run_folder_without_torch_or_ray(tmp_path):
    """The search package and its modules that run before the input is checked import neither torch nor Ray,
    and neither does a search refused for bad input or for a run folder another search holds."""
    run = tmp_path / "results" / "smoke" / "r1"
    run.mkdir(parents=True)
    r = _run(f"""
        import sys
        from nas_attn.errors import NasAttnError
        from nas_attn.search import SearchResult, build_parser, main, ray_session, run_search
        import nas_attn.search.driver, nas_attn.search.flags, nas_attn.search.folder, nas_attn.search.inputs
        import nas_attn.search.process
        from nas_attn.storage import RunLock
        lock = RunLock({str(run)!r}).acquire()
        for flags in (dict(trials=0), dict(epochs=-1), dict(sampler="nope"),
                      dict(results_dir={str(tmp_path / "results")!r}, run_id="r1")):
            try:
                run_search("smoke", **flags)
                raise SystemExit("accepted " + str(flags))
            except NasAttnError as exc:
                print(exc)
        assert main(["--space", "nosuch"]) == 2
        print("torch" in sys.modules, "ray" in sys.modules)
    """)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "is in use by another search" in lines[-2]
    assert lines[-1] == "False False"
    assert sorted(p.name for p in run.iterdir()) == [".lock"]
