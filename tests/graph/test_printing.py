"""Graph dumps: debugprint (tree, types, back-references, functions with updates), pprint
(infix with correct precedence, checked by evaluating the text with numpy), to_networkx and
to_dot, including graphs too deep for recursion."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import symk
from symk import backend as K
from symk.graph import printing
from tests.fresh_python import fresh_python

HERE = os.path.basename(__file__)


@pytest.fixture
def mlp():
    x = K.placeholder((None, 3), name="x")
    w = K.variable(np.ones((3, 4)), name="W_print")
    b = K.variable(np.zeros(4), name="b_print")
    h = K.dot(x, w) + b
    y = K.relu(h) * K.sigmoid(h)  # h is used twice
    return x, w, b, h, y


# ---------------------------------------------------------------- debugprint


def test_debugprint_lines_show_op_name_and_type(mlp):
    x, w, b, h, y = mlp
    text = symk.debugprint(y)
    lines = text.splitlines()
    assert lines[0] == "mul float32[?,4]"
    assert any(re.fullmatch(r"[ |]*placeholder 'x' float32\[\?,3\]", ln) for ln in lines)
    assert any(re.fullmatch(rf"[ |]*variable '{w.name}' float32\[3,4\]", ln) for ln in lines)
    assert any(re.fullmatch(r"[ |]*relu float32\[\?,4\]", ln) for ln in lines)
    # children are indented one level deeper than their parent
    depth = {ln.strip(" |").split()[0]: (len(ln) - len(ln.lstrip(" |"))) for ln in lines}
    assert depth["relu"] > depth["mul"]
    assert depth["placeholder"] > depth["einsum{ab,bd->ad}"] > depth["add"]


def test_debugprint_shared_node_printed_once_then_referenced(mlp):
    *_, y = mlp
    text = symk.debugprint(y)
    full = [ln for ln in text.splitlines() if re.search(r"\badd float32\[\?,4\]", ln)]
    assert len(full) == 1 and full[0].endswith(" #1")
    refs = [ln for ln in text.splitlines() if "#1 (see above)" in ln]
    assert len(refs) == 1
    # the subtree below the shared node appears only once
    assert text.count("placeholder 'x'") == 1
    assert text.index("#1 (see above)") > text.index("add float32[?,4] #1")


def test_debugprint_unshared_nodes_have_no_id():
    x = K.placeholder((2,), name="x")
    text = symk.debugprint(K.exp(x) + 1.0)
    assert "#" not in text


def test_debugprint_key_attributes():
    x = K.placeholder((None, 5), name="x")
    text = symk.debugprint([K.sum(x, axis=1, keepdims=True), x[:, 1:4], K.cast(x, "int32"),
                            K.softmax(x, axis=0)])
    assert "sum{axes=(1,), keepdims=True} float32[?,1]" in text
    assert "getitem[:, 1:4] float32[?,3]" in text
    assert "cast int32[?,5]" in text
    assert "softmax{axis=0} float32[?,5]" in text


def test_debugprint_list_shares_ids_across_roots():
    x = K.placeholder((3,), name="x")
    s = K.exp(x)
    text = symk.debugprint([s * 2.0, s + 1.0])
    assert text.count("exp float32[3] #1") == 1
    assert text.count("#1 (see above)") == 1
    assert text.splitlines()[0] == "mul float32[3]"


def test_debugprint_function_shows_inputs_outputs_and_updates():
    x = K.placeholder((None, 2), name="xin")
    v = K.variable(np.zeros((2,)), name="acc_print")
    c = K.variable(np.zeros((), dtype="int32"), dtype="int32", name="count_print")
    out = K.sum(x * v, axis=1)
    f = K.function([x], [out], updates=[K.update_add(v, K.sum(x, axis=0)), (c, c + 1)],
                   name="f_print")
    text = symk.debugprint(f)
    lines = text.splitlines()
    assert lines[0] == "function 'f_print': 1 input(s), 1 output(s), 2 update(s)"
    assert "input 0: 'xin' float32[?,2]" in lines
    assert "output 0:" in lines
    assert any(ln.startswith(f"{v.name} <- add float32[2]") for ln in lines)
    assert any(ln.startswith(f"{c.name} <- add int32[]") for ln in lines)
    # the output's tree comes before the updates; the variable read by both is shared
    assert text.index("output 0:") < text.index(f"{v.name} <- ")
    assert re.search(rf"variable '{v.name}' float32\[2\] #\d+\n", text)
    assert re.search(rf"#\d+ \(see above\) '{v.name}'", text)


def test_debugprint_accepts_compiled_function_and_writes_file(tmp_path):
    x = K.placeholder((2,), name="x")
    f = K.function([x], [x * 3.0])
    path = tmp_path / "dump.txt"
    with open(path, "w") as fh:
        text = symk.debugprint(f.fn, file=fh)
    assert path.read_text() == text
    assert "mul float32[2]" in text


def test_debugprint_rejects_non_graph_objects():
    with pytest.raises(symk.SymkError, match="cannot print"):
        symk.debugprint(np.zeros(3))


# ---------------------------------------------------------------- pprint


def test_pprint_example_from_the_docs():
    x = K.placeholder((2,), name="x")
    w = K.variable(np.zeros(2), name="W")
    assert symk.pprint((x + 1.0) * K.sigmoid(w)) == f"(x + 1.0) * sigmoid({w.name})"


def test_pprint_constants_by_value_and_large_constants_abbreviated():
    x = K.placeholder((3,), name="x")
    assert symk.pprint(x * 2.5) == "x * 2.5"
    assert symk.pprint(x + np.array([1.0, 2.0, 3.0], np.float32)) == "x + [1., 2., 3.]"
    big = symk.pprint(K.reshape(x, (3, 1)) + np.zeros((3, 100), np.float32))
    assert "array<float32[3,100]>" in big or "constant<float32[3,100]>" in big
    assert "0., 0., 0., 0." not in big


def test_pprint_function_call_form_and_indexing():
    x = K.placeholder((None, 4), name="x")
    assert symk.pprint(K.sum(K.exp(x), axis=1)) == "sum(exp(x), axes=(1,))"
    assert symk.pprint(x[:, ::2]) == "x[:, ::2]"
    assert symk.pprint((x + 1.0)[0]) == "(x + 1.0)[0]"


@pytest.mark.parametrize("build,ref", [
    (lambda x, y: x - (y - 1.0), lambda x, y: x - (y - 1.0)),
    (lambda x, y: x - y - 1.0, lambda x, y: x - y - 1.0),
    (lambda x, y: x / (y * 2.0), lambda x, y: x / (y * 2.0)),
    (lambda x, y: (x + y) * (x - y), lambda x, y: (x + y) * (x - y)),
    (lambda x, y: -x ** 2.0, lambda x, y: -(x ** 2.0)),
    (lambda x, y: (-x) ** 2.0, lambda x, y: (-x) ** 2.0),
    (lambda x, y: x ** (y ** 0.5), lambda x, y: x ** (y ** 0.5)),
    (lambda x, y: (x ** y) ** 0.5, lambda x, y: (x ** y) ** 0.5),
    (lambda x, y: -(x + y), lambda x, y: -(x + y)),
    (lambda x, y: x // (y + 1.0) % 3.0, lambda x, y: np.floor_divide(x, y + 1.0) % 3.0),
    (lambda x, y: 2.0 - x * (3.0 - y) / x, lambda x, y: 2.0 - x * (3.0 - y) / x),
])
def test_pprint_infix_text_evaluates_to_the_same_numbers(build, ref):
    """The one-liner is valid Python with the right precedence: evaluating it with numpy
    arrays for the placeholders gives the reference."""
    x = K.placeholder((5,), name="x")
    y = K.placeholder((5,), name="y")
    text = symk.pprint(build(x, y))
    rng = np.random.default_rng(0)
    xv = rng.uniform(0.5, 2.0, 5)
    yv = rng.uniform(0.5, 2.0, 5)
    got = eval(text, {"x": xv, "y": yv})  # noqa: S307
    np.testing.assert_allclose(got, ref(xv, yv), rtol=1e-12)


def test_pprint_comparisons_and_logic_are_parenthesized():
    x = K.placeholder((5,), name="x")
    text = symk.pprint((x + 1.0) > (x * 2.0))
    assert text == "x + 1.0 > x * 2.0"
    xv = np.linspace(-2, 2, 5)
    np.testing.assert_array_equal(eval(text, {"x": xv}), xv + 1.0 > xv * 2.0)  # noqa: S307


def test_pprint_function_lists_outputs_then_updates():
    x = K.placeholder((2,), name="x")
    v = K.variable(np.zeros(2), name="v_pp")
    f = K.function([x], [x * v], updates=[K.update_add(v, x)])
    assert symk.pprint(f) == f"x * {v.name}\n{v.name} <- {v.name} + x"


def test_pprint_abbreviates_exponential_sharing():
    x = K.placeholder((2,), name="x")
    z = x
    for _ in range(60):  # 2**60 leaves if expanded
        z = z + z
    text = symk.pprint(z, max_len=1000)
    assert len(text) < 5000 and "add(...)" in text


# ---------------------------------------------------------------- networkx and DOT


def test_to_networkx_nodes_attributes_and_edges(mlp):
    x, w, b, h, y = mlp
    g = symk.to_networkx(y)
    import networkx as nx

    assert isinstance(g, nx.DiGraph) and nx.is_directed_acyclic_graph(g)
    # placeholder, W, einsum, b, bias reshape?, add, relu, sigmoid, mul: count distinct ops
    ops = sorted(d["op"] for _, d in g.nodes(data=True))
    assert ops.count("placeholder") == 1 and ops.count("variable") == 2
    assert ops.count("add") == 1 and ops.count("mul") == 1
    (out,) = g.graph["outputs"]
    assert g.nodes[out]["op"] == "mul" and g.out_degree(out) == 0
    assert g.nodes[out]["dtype"] == "float32" and g.nodes[out]["shape"] == (None, 4)
    names = {d["name"] for _, d in g.nodes(data=True)}
    assert {"x", w.name, b.name} <= names
    for _, d in g.nodes(data=True):
        assert set(d) >= {"op", "dtype", "shape", "name", "line"}
        assert HERE in d["line"]  # every node was created in this file
    add = next(k for k, d in g.nodes(data=True) if d["op"] == "add")
    assert g.out_degree(add) == 2  # consumed by relu and sigmoid
    assert {g.nodes[s]["op"] for s in g.successors(add)} == {"relu", "sigmoid"}


def test_to_networkx_function_updates():
    v = K.variable(np.ones(3), name="v_nx")
    x = K.placeholder((3,), name="x")
    f = K.function([x], [x * 2.0], updates=[(v, v * x)], name="nxf")
    g = symk.to_networkx(f)
    ((var, val),) = g.graph["updates"]
    assert g.nodes[var]["op"] == "variable" and g.nodes[var]["name"] == v.name
    assert g.nodes[val]["op"] == "mul" and g.has_edge(var, val)
    assert g.graph["name"] == "nxf"


def test_to_networkx_keeps_repeated_inputs():
    x = K.placeholder((3,), name="x")
    g = symk.to_networkx(x * x)
    ((a, b, d),) = list(g.edges(data=True))
    assert d["index"] == "0,1"


def _parse_dot(text: str):
    assert text.startswith("digraph ") and text.rstrip().endswith("}")
    nodes = re.findall(r"^  (n\d+) \[label=\"((?:[^\"\\]|\\.)*)\"", text, re.M)
    edges = re.findall(r"^  (n\d+) -> (n\d+)", text, re.M)
    return dict(nodes), edges


def test_to_dot_writes_a_valid_file(tmp_path, mlp):
    *_, y = mlp
    path = tmp_path / "g.dot"
    text = symk.to_dot(y, str(path))
    assert path.read_text() == text
    nodes, edges = _parse_dot(text)
    g = symk.to_networkx(y)
    assert len(nodes) == g.number_of_nodes() and len(edges) == g.number_of_edges()
    assert all(a in nodes and b in nodes for a, b in edges)
    assert any(lbl == "placeholder 'x' float32[?,3]" for lbl in nodes.values())
    assert text.count("{") == text.count("}")
    if shutil.which("dot"):
        r = subprocess.run(["dot", "-Tsvg", str(path)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr


def test_to_dot_escapes_quotes_in_labels(tmp_path):
    x = K.placeholder((2,), name='say "hi"\\')
    text = symk.to_dot(x * 2.0, tmp_path / "q.dot")
    nodes, _ = _parse_dot(text)
    assert 'placeholder \'say \\"hi\\"\\\\\' float32[2]' in nodes.values()


def test_to_dot_function_marks_updates(tmp_path):
    v = K.variable(np.ones(3), name="v_dot")
    f = K.function([], [], updates=[(v, v * 2.0)])
    text = symk.to_dot(f, tmp_path / "f.dot")
    assert "style=dashed" in text and 'label="update"' in text


# ---------------------------------------------------------------- deep graphs


def test_deep_chain_does_not_hit_the_recursion_limit(tmp_path):
    x = K.placeholder((2,), name="x")
    z = x
    for i in range(5000):
        z = K.exp(z) if i % 2 else z * 0.5
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        text = symk.debugprint(z)
        one = symk.pprint(z)
        g = symk.to_networkx(z)
        dot = symk.to_dot(z, tmp_path / "deep.dot")
    finally:
        sys.setrecursionlimit(old)
    # 5000 ops, x, and the shared 0.5 once in full plus 2499 back-references
    assert len(text.splitlines()) == 5000 + 1 + 2500
    assert text.count("(see above) 0.5") == 2499
    assert one.count("exp(") == 2500 and one.startswith("exp(")
    assert g.number_of_nodes() == 5002
    assert dot.count(" -> ") == 7500  # 5000 chain edges + 2500 from the constant
    # output stays linear in size: indentation is capped
    assert len(text) < 200 * 5002


# ---------------------------------------------------------------- layering


def test_printing_imports_only_the_graph_layer():
    code = ("import sys, symk.graph.printing; "
            "print([m for m in sys.modules if m.startswith('symk.') and "
            "m.split('.')[1] in ('backend', 'runtime', 'passes', 'codegen')])")
    assert fresh_python(code).strip() == "[]"
    assert symk.debugprint is printing.debugprint and symk.to_dot is printing.to_dot


def test_tensor_with_keras_attributes_is_printed_as_a_tensor():
    x = K.placeholder((2,), name="x")
    y = x * 2.0
    y.outputs, y.updates, y.fn = ["junk"], ["junk"], object()  # attributes never confuse it
    assert symk.debugprint(y).splitlines()[0] == "mul float32[2]"
    assert symk.pprint(y) == "x * 2.0"
