"""tools/execute_notebooks.py: where it writes, and which widget states it keeps."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "execute_notebooks.py"
STATE = "application/vnd.jupyter.widget-state+json"
VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def tool():
    spec = importlib.util.spec_from_file_location("execute_notebooks_under_test", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _notebook(*sources: str):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


class _NoKernel:
    """Stands in for nbclient.NotebookClient: 'executes' by adding one output."""

    def __init__(self, nb, **kwargs):
        self.nb = nb

    def execute(self):
        self.nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]


def test_the_temporary_file_never_matches_the_chapters_glob(tool, tmp_path, monkeypatch):
    path = tmp_path / "01_chapter.ipynb"
    nbformat.write(_notebook("print(42)"), path)
    monkeypatch.setattr(tool, "NotebookClient", _NoKernel)
    seen = []
    real_write = tool.nbformat.write

    def write(nb, fp, *args, **kwargs):
        # The moment a killed run would leave its temporary file behind.
        seen.append(sorted(p.name for p in tmp_path.glob("*.ipynb")))
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return real_write(nb, fp, *args, **kwargs)

    monkeypatch.setattr(tool.nbformat, "write", write)
    tool.execute(path, timeout=60)
    globbed, listed = seen
    assert globbed == ["01_chapter.ipynb"], f"a temporary notebook matches *.ipynb: {globbed}"
    assert len(listed) == 2 and all(n.startswith(".") for n in set(listed) - {"01_chapter.ipynb"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_chapter.ipynb"]
    assert nbformat.read(path, as_version=4).cells[0].outputs[0]["text"] == "42\n"


def test_a_failed_write_leaves_the_old_notebook_and_no_temporary(tool, tmp_path, monkeypatch):
    path = tmp_path / "02_chapter.ipynb"
    nbformat.write(_notebook("print(42)"), path)
    before = path.read_bytes()
    monkeypatch.setattr(tool, "NotebookClient", _NoKernel)

    def broken_write(nb, fp, *args, **kwargs):
        fp.write('{"half": ')
        raise OSError("disk full")

    monkeypatch.setattr(tool.nbformat, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        tool.execute(path, timeout=60)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["02_chapter.ipynb"]


# --- progress bars out of the stored widget state ---------------------------------------------
def _model(name, module="@jupyter-widgets/controls", **state):
    return {"model_name": name, "model_module": module, "model_module_version": "2.0.0", "state": state}


def _ref(mid):
    return f"IPY_MODEL_{mid}"


def _with_widgets():
    """A notebook as nbclient stores it: one tqdm bar (as tqdm.notebook builds it) and a slider."""
    state = {
        "bar_box_layout": _model("LayoutModel", "@jupyter-widgets/base"),
        "bar_left": _model("HTMLModel", value="epoch\u20072/2:\u2007100%", layout=_ref("bar_left_layout"),
                           style=_ref("bar_left_style")),
        "bar_left_layout": _model("LayoutModel", "@jupyter-widgets/base"),
        "bar_left_style": _model("HTMLStyleModel"),
        "bar_progress": _model("FloatProgressModel", value=626.0, max=626.0, bar_style="success",
                               layout=_ref("bar_progress_layout"), style=_ref("bar_progress_style")),
        "bar_progress_layout": _model("LayoutModel", "@jupyter-widgets/base"),
        "bar_progress_style": _model("ProgressStyleModel"),
        "bar_right": _model("HTMLModel", value="\u2007626/626\u2007[01:25&lt;00:00,\u20076.48batch/s]",
                            layout=_ref("bar_right_layout"), style=_ref("bar_right_style")),
        "bar_right_layout": _model("LayoutModel", "@jupyter-widgets/base"),
        "bar_right_style": _model("HTMLStyleModel"),
        "bar": _model("HBoxModel", children=[_ref("bar_left"), _ref("bar_progress"), _ref("bar_right")],
                      layout=_ref("bar_box_layout")),
        # An explorer: a VBox holding a slider and a progress gauge that is not a tqdm bar.
        "slider_layout": _model("LayoutModel", "@jupyter-widgets/base"),
        "slider": _model("IntSliderModel", value=3, layout=_ref("slider_layout"),
                         style=_ref("slider_style")),
        "slider_style": _model("SliderStyleModel"),
        "gauge": _model("IntProgressModel", value=2, max=5, layout=_ref("slider_layout")),
        "explorer": _model("VBoxModel", children=[_ref("slider"), _ref("gauge")]),
    }
    nb = _notebook("fit(...)", "explore(...)")
    nb.metadata["widgets"] = {STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    view = {"version_major": 2, "version_minor": 0}
    nb.cells[0].outputs = [
        nbformat.v4.new_output("display_data", data={VIEW: {**view, "model_id": "bar"},
                                                     "text/plain": "  0%|          | 0/626 [00:00<?, ?batch/s]"}),
        nbformat.v4.new_output("stream", name="stdout", text="done\n"),
    ]
    nb.cells[1].outputs = [
        nbformat.v4.new_output("display_data", data={VIEW: {**view, "model_id": "explorer"},
                                                     "text/plain": "VBox(...)"}),
    ]
    return nb


def test_progress_bars_leave_the_widget_state_and_other_widgets_stay(tool):
    nb = _with_widgets()
    assert tool.strip_progress_bars(nb) == 1
    state = nb.metadata["widgets"][STATE]["state"]
    assert sorted(state) == ["explorer", "gauge", "slider", "slider_layout", "slider_style"]
    assert not any(m["model_name"] == "FloatProgressModel" for m in state.values())
    bar_out, text_out = nb.cells[0].outputs
    assert VIEW not in bar_out["data"]
    assert bar_out["data"]["text/plain"] == "epoch 2/2: 100%|██████████| 626/626 [01:25<00:00, 6.48batch/s]"
    assert text_out["text"] == "done\n"
    assert nb.cells[1].outputs[0]["data"][VIEW]["model_id"] == "explorer"
    nbformat.validate(nb)


def test_a_notebook_with_only_progress_bars_stores_no_widget_state(tool):
    nb = _with_widgets()
    state = nb.metadata["widgets"][STATE]["state"]
    for mid in ("explorer", "gauge", "slider", "slider_layout", "slider_style"):
        del state[mid]
    nb.cells[1].outputs = []
    assert tool.strip_progress_bars(nb) == 1
    assert "widgets" not in nb.metadata
    assert tool.strip_progress_bars(nb) == 0  # and a second pass changes nothing


def test_a_layout_shared_with_another_widget_is_kept(tool):
    nb = _with_widgets()
    state = nb.metadata["widgets"][STATE]["state"]
    state["slider"]["state"]["layout"] = _ref("bar_box_layout")
    tool.strip_progress_bars(nb)
    assert "bar_box_layout" in state and "bar" not in state and "bar_left" not in state


@pytest.mark.slow
def test_executed_notebook_keeps_the_slider_state_but_no_tqdm_bar(tmp_path):
    nb = _notebook(
        "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='epochs'):\n    pass",
        "import ipywidgets\nipywidgets.IntSlider(value=7)",
    )
    path = tmp_path / "widgets.ipynb"
    nbformat.write(nb, path)
    result = subprocess.run([sys.executable, str(TOOL), str(path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["progress_bars_stripped"] == 1
    done = nbformat.read(path, as_version=4)
    state = done.metadata["widgets"][STATE]["state"]
    names = sorted(m["model_name"] for m in state.values())
    assert "IntSliderModel" in names
    assert not {"FloatProgressModel", "HTMLModel", "HBoxModel"} & set(names), names
    bar_outputs = [o for o in done.cells[0].outputs if o["output_type"] == "display_data"]
    assert bar_outputs and all(VIEW not in o["data"] for o in bar_outputs)
    assert "epochs: 100%" in bar_outputs[-1]["data"]["text/plain"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["widgets.ipynb"]
