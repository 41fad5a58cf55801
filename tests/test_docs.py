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
