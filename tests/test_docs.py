"""The docs say what the code computes: numbering tables, links, no references outside the project."""

import re

import pytest
from conftest import REPO

from nas_attn import Arch
from nas_attn.__main__ import positions_markdown
from nas_attn.backbones import list_backbones

DOCS = REPO / "docs"
CIFAR = {"wrn16_8", "wrn16_10", "wrn28_10", "resnext29_8x64d", "resnext29_32x4d", "densenet_bc100"}


@pytest.mark.parametrize("backbone", list_backbones())
def test_numbering_tables_are_what_the_code_computes(backbone):
    text = (DOCS / "numbering.md").read_text()
    size = 32 if backbone in CIFAR else 224
    assert f"#### `{backbone}`" in text
    assert positions_markdown(Arch(backbone, input_size=size).positions()) in text


@pytest.mark.parametrize("backbone", ["timm:resnet18", "timm:efficientnet_b0", "timm:convnext_atto",
                                      "timm:regnetx_002", "torchvision:densenet121"])
def test_the_automatic_numbering_examples_are_what_the_code_computes(backbone):
    text = (DOCS / "numbering.md").read_text()
    assert f"`nas-attn positions {backbone} --input-size 224`" in text
    assert positions_markdown(Arch(backbone, input_size=224).positions()) in text


def test_every_module_is_documented():
    from nas_attn.modules import list_modules

    text = (DOCS / "modules.md").read_text()
    assert all(f"`{name}`" in text for name in list_modules())


def test_links_between_pages_resolve():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+\.md)", page.read_text()):
            assert (DOCS / target).is_file(), (page.name, target)


def test_code_points_into_docs_not_outside():
    owned = [*(REPO / "nas_attn").rglob("*.py"), *(REPO / "search_spaces").glob("*.yaml"), REPO / "README.md"]
    assert len(owned) > 40
    for path in owned:
        text = path.read_text()
        assert "SPEC" not in text.replace("SPEC_QUOTE", ""), path
        for ref in re.findall(r"\b(docs/[\w-]+\.md)\b", text):
            assert (REPO / ref).is_file(), (path, ref)


def _code_map(text: str) -> str:
    start = text.index("### Code map")
    end = text.find("\n## ", start)
    return text[start:end if end > 0 else len(text)]


def test_the_readme_code_map_and_the_search_flow_name_every_module():
    """Each source file of the package is named in the README's code map (a package's files under its
    folder), and each module of the search package in docs/search.md's flow."""
    code_map = _code_map((REPO / "README.md").read_text())
    rows = [line for line in code_map.splitlines() if line.startswith("| ")]
    missing = []
    for path in sorted((REPO / "nas_attn").rglob("*.py")):
        rel = path.relative_to(REPO / "nas_attn")
        if rel.name == "__init__.py" or rel.parts[0] in ("_bundled", "search_spaces"):
            continue
        if len(rel.parts) == 1:
            named = f"`{rel.name}`" in code_map
        else:  # a package's own modules: named in its row (nested folders: the folder is named)
            top = f"`{rel.parts[0]}/`"
            row = next((r for r in rows if top in r), "")
            named = bool(row) and (len(rel.parts) > 2 or rel.parts[0] in ("modules", "backbones", "papers")
                                   or f"`{rel.name}`" in row)
        if not named:
            missing.append(str(rel))
    assert not missing, f"README code map leaves out {missing}"
    flow = (REPO / "docs" / "search.md").read_text()
    search_modules = [p.name for p in (REPO / "nas_attn" / "search").glob("*.py") if p.name != "__init__.py"]
    for name in ("runfolder", "storage", "manifest", "stopping", "localray", "checks", "records", "samplers"):
        search_modules.append(f"{name}.py")
    assert not [m for m in search_modules if m not in flow], "docs/search.md's flow leaves a module out"
