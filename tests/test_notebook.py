"""The notebook tour runs top to bottom, as a lecturer would run it, and shows what it says."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_runs_and_shows_its_figures_and_explanations(path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel inherits this process' environment
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    htmls = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    if path.stem == "optimizers_tour":
        assert len(images) >= 4  # the failing run, the comparison, the range test, the lr lowered
        assert sum("minireg-explain" in h for h in htmls) >= 5  # a step of each optimizer, written out
        assert "verified: re-ran with it" in text and "reproduced bit for bit: True" in text
        assert "'changed': {'lr': 0.01}" in text
