"""The pattern engine and the rewrite driver: matching (commutative operands, the ``*`` wildcard,
captures of nodes and attributes, predicates), rule sets, the fixed point, the ping-pong guard,
creation lines carried to replacements, ``SYMK_TRACE_REWRITES``, ``substitute``, and CSE by
hash-consing."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from symk import backend as K
from symk.graph import build as gb
from symk.graph.node import apply, creation_line, substitute
from symk.passes import canonicalize, stabilize
from symk.passes.pattern import AttrVar, Const, Pat, Var, match
from symk.passes.pipeline import optimize
from symk.passes.rewrite import RewriteLoopError, Rule, RuleSet, rewrite
from tests.passes.common import ph

X, Y = Var("x"), Var("y")


def _line() -> int:
    """The caller's line number."""
    return inspect.currentframe().f_back.f_lineno


# ---------------------------------------------------------------- matching


def test_match_binds_inputs_and_the_node():
    x, y = ph((3,)), ph((3,))
    n = gb.sub(gb.exp(x), y)
    b = match(Pat("sub", Pat("exp", X, name="e"), Y, name="root"), n)
    assert b == {"x": x, "e": n.inputs[0], "y": y, "root": n}
    assert match(Pat("add", X, Y), n) is None
    assert match(Pat("sub", Pat("log", X), Y), n) is None
    assert match(Pat("sub", X), n) is None  # arity differs


def test_commutative_ops_match_either_operand_order():
    x = ph((3,))
    zero_first = apply("add", [gb.const(np.float32(0)), x])
    zero_second = apply("add", [x, gb.const(np.float32(0))])
    pat = Pat("add", X, Const("c", 0))
    for n in (zero_first, zero_second):
        b = match(pat, n)
        assert b is not None and b["x"] is x
    # sub is not commutative: 0 - x does not match x - 0
    assert match(Pat("sub", X, Const("c", 0)), gb.sub(0.0, x)) is None
    assert match(Pat("sub", X, Const("c", 0)), gb.sub(x, 0.0))["x"] is x


def test_repeated_capture_must_be_the_same_node():
    x, y = ph((3,)), ph((3,))
    pat = Pat("mul", X, X)
    assert match(pat, gb.mul(x, x)) == {"x": x}
    assert match(pat, gb.mul(x, y)) is None


def test_a_named_pattern_and_a_capture_of_the_same_name_must_agree():
    x, y = ph((3,)), ph((3,))
    ex, ey = gb.exp(x), gb.exp(y)
    pat = Pat("mul", Pat("exp", X, name="e"), Var("e"))
    assert match(pat, gb.mul(ex, ex)) == {"x": x, "e": ex}
    assert match(pat, gb.mul(ex, ey)) is None
    rev = Pat("mul", Var("e"), Pat("exp", X, name="e"))  # bound by the Var first
    assert match(rev, gb.mul(ex, ex)) is not None
    assert match(rev, gb.mul(ey, ex)) is None and match(rev, gb.mul(ex, ey)) is None


def test_wildcard_attr_captures_and_predicates():
    x = ph((2, 5))
    sm = apply("softmax", [x], axis=1)
    assert match(Pat("*", X), sm)["x"] is x
    assert match(Pat("*"), gb.exp(x)) == {}
    assert match(Pat("softmax", X, attrs={"axis": AttrVar("a")}), sm)["a"] == 1
    assert match(Pat("softmax", X, attrs={"axis": 0}), sm) is None
    assert match(Pat("softmax", X, attrs={"axis": lambda a: a > 0}), sm) is not None
    # an attribute capture used twice must see equal values
    tt = gb.transpose(gb.transpose(ph((2, 3, 4)), (1, 0, 2)), (1, 0, 2))
    same = Pat("transpose", Pat("transpose", X, attrs={"perm": AttrVar("p")}),
               attrs={"perm": AttrVar("p")})
    assert match(same, tt)["p"] == (1, 0, 2)
    other = gb.transpose(gb.transpose(ph((2, 3, 4)), (1, 0, 2)), (0, 2, 1))
    assert match(same, other) is None
    big = Var("v", lambda n: n.ndim == 2)
    assert match(Pat("exp", big), gb.exp(x)) is not None
    assert match(Pat("exp", big), gb.exp(ph((3,)))) is None


def test_const_predicate():
    x = ph((3,))
    assert match(Const("c"), gb.const(np.ones(3, np.float32))) is not None
    assert match(Const("c", 1), gb.const(np.ones(3, np.float32))) is not None
    assert match(Const("c", 1), gb.const(np.array([1, 2], np.float32))) is None
    assert match(Const("c", 0), gb.const(np.zeros(0, np.float32))) is None  # empty: no value
    assert match(Const("c"), x) is None


def test_ruleset_indexes_rules_by_root_op():
    rs = RuleSet()

    @rs.rule("r1", Pat("exp", X), "doc 1")
    def r1(b, n):
        return None

    rs.add(Rule("r2", Pat("*", X), lambda b, n: None))
    assert len(rs) == 2
    assert [r.name for r in rs.by_op["exp"]] == ["r1"]
    assert [r.name for r in rs.by_op["*"]] == ["r2"]
    assert rs.rules[0].doc == "doc 1"


def test_every_rule_has_a_name_and_its_algebra():
    from symk.passes import specialize

    names = []
    for mod in (canonicalize, stabilize, specialize):
        for rs in (mod.rules, getattr(mod, "fold_rules", RuleSet())):
            for r in rs.rules:
                assert r.doc and ("->" in r.doc), f"rule {r.name} has no algebra: {r.doc!r}"
                names.append(r.name)
    assert len(names) == len(set(names)), "rule names must be unique"


# ---------------------------------------------------------------- the driver


def test_rewrite_reaches_a_fixed_point_through_nested_rules():
    x = ph((4,))
    # ((x * 1) + -0) - (-(-0)) ... every layer disappears, bottom-up and across rounds
    n = gb.sub(gb.add(gb.mul(x, 1.0), -0.0), gb.neg(gb.neg(gb.const(np.float32(0)))))
    stats: dict[str, int] = {}
    (out,) = rewrite([n], canonicalize.rules, stats)
    assert out is x
    assert stats["mul_one"] == 1 and stats["add_zero"] == 1 and stats["neg_neg"] == 1
    assert rewrite([out], canonicalize.rules) == [x]  # idempotent


def test_rewrite_keeps_untouched_graphs_identical():
    x, y = ph((4,)), ph((4,))
    n = gb.mul(gb.exp(x), y)
    assert rewrite([n], canonicalize.rules)[0] is n


def test_rules_undoing_each_other_raise_naming_the_rules():
    rs = RuleSet()
    rs.add(Rule("sin_to_cos", Pat("sin", X), lambda b, n: gb.cos(b["x"]), "sin x -> cos x"))
    rs.add(Rule("cos_to_sin", Pat("cos", X), lambda b, n: gb.sin(b["x"]), "cos x -> sin x"))
    with pytest.raises(RewriteLoopError) as e:
        rewrite([gb.exp(gb.sin(ph((3,))))], rs)
    msg = str(e.value)
    assert "sin_to_cos" in msg and "cos_to_sin" in msg
    assert "fixed point" in msg


def test_a_growing_rule_is_stopped():
    rs = RuleSet()
    rs.add(Rule("grow", Pat("exp", X), lambda b, n: gb.exp(gb.neg(gb.neg(b["x"]))),
                "exp x -> exp(--x)"))
    rs.add(Rule("neg_neg", Pat("neg", Pat("neg", X)), lambda b, n: b["x"], "--x -> x"))
    with pytest.raises(RewriteLoopError, match="grow"):
        rewrite([gb.exp(ph((3,)))], rs)


def test_a_rule_changing_the_type_is_an_internal_error():
    rs = RuleSet()
    rs.add(Rule("bad", Pat("exp", X), lambda b, n: gb.cast(n, "float64"), "exp x -> f64"))
    with pytest.raises(Exception, match="rule 'bad' changed the type"):
        rewrite([gb.exp(ph((3,)))], rs)


def test_creation_line_carries_to_the_replacement():
    x = K.placeholder((2, 5))
    y = K.log(K.softmax(x)); line = _line()  # noqa: E702
    z = K.log(K.sigmoid(x)); zline = _line()  # noqa: E702
    opt = optimize([y.node, z.node], level=2, exclude=set())
    ls, lsig = opt.roots
    assert ls.op.name == "log_softmax"
    assert creation_line(ls) == f"{__file__}:{line}"
    # every node a rule creates gets the replaced node's line (here -softplus(-x))
    assert [n.op.name for n in (lsig, lsig.inputs[0], lsig.inputs[0].inputs[0])] == \
        ["neg", "softplus", "neg"]
    for n in (lsig, lsig.inputs[0], lsig.inputs[0].inputs[0]):
        assert creation_line(n) == f"{__file__}:{zline}"


def test_rebuilt_parents_keep_their_own_lines():
    x = K.placeholder((3,))
    inner = x * 1.0
    outer = K.exp(inner); line = _line()  # noqa: E702
    (out,) = rewrite([outer.node], canonicalize.rules)
    assert out.op.name == "exp" and out.inputs[0] is x.node and out is not outer.node
    assert creation_line(out) == f"{__file__}:{line}"


def test_trace_rewrites_logs_each_firing(monkeypatch, capsys):
    monkeypatch.setenv("SYMK_TRACE_REWRITES", "1")
    x = ph((3,))
    rewrite([gb.exp(gb.add(x, -0.0))], canonicalize.rules)
    err = capsys.readouterr().err
    assert "rewrite add_zero" in err and "==>" in err
    monkeypatch.setenv("SYMK_TRACE_REWRITES", "0")
    rewrite([gb.exp(gb.mul(x, 1.0))], canonicalize.rules)
    assert "rewrite" not in capsys.readouterr().err


def test_substitute_replaces_nodes_and_rebuilds_users():
    x, y, z = ph((3,)), ph((3,)), ph((3,))
    a = gb.exp(x)
    r1, r2 = gb.add(a, y), gb.mul(y, y)
    out1, out2 = substitute([r1, r2], {id(a): z})
    assert out1 is gb.add(z, y)
    assert out2 is r2  # untouched subgraphs stay the same nodes


# ---------------------------------------------------------------- CSE


def test_same_expression_built_twice_is_one_node():
    x = K.placeholder((None, 4))
    w = K.variable(np.ones((4, 3), np.float32))
    b = K.variable(np.zeros(3, np.float32))

    def dense(inp):  # a "layer" sharing its weights, called from two places
        return K.relu(K.bias_add(K.dot(inp, w), b))

    first, second = dense(x), dense(x)
    assert first is not second and first.node is second.node
    assert (K.exp(first) * 2.0).node is (K.exp(second) * 2.0).node
    f = K.function([x], [K.sum(first), K.mean(second)])
    sched = f.fn.schedule
    assert [e.node.op.name for e in sched.externs].count("einsum") == 1
    got = f([np.arange(8, dtype=np.float32).reshape(2, 4)])
    h = np.maximum(np.arange(8, dtype=np.float32).reshape(2, 4) @ np.ones((4, 3)), 0)
    np.testing.assert_allclose(got[0], h.sum(), rtol=1e-6)
    np.testing.assert_allclose(got[1], h.mean(), rtol=1e-6)


def test_rewriting_merges_expressions_that_become_equal():
    x = ph((3,))
    a, b = gb.exp(gb.add(x, -0.0)), gb.exp(gb.mul(x, 1.0))
    assert a is not b
    out = rewrite([a, b], canonicalize.rules)
    assert out[0] is out[1] is gb.exp(x)
    opt = optimize([gb.sin(a), gb.cos(b)], level=1, exclude=set())
    assert [n.op.name for k in opt.schedule.kernels for n in k.nodes].count("exp") == 1


def test_base_rules_are_not_retried_on_nodes_known_fixed():
    seen: list[str] = []

    def counting(tag):
        def build(b, n):
            seen.append(f"{tag}:{n.op.name}")
            return None
        return build

    base = RuleSet([Rule("base_probe", Pat("*"), counting("base"))])
    more = RuleSet([*base.rules, Rule("more_probe", Pat("*"), counting("more"))])
    x = ph((3,))
    roots = [gb.exp(gb.add(x, 1.0))]
    assert rewrite(roots, base, base=base) == roots
    assert sorted(seen) == ["base:add", "base:constant", "base:exp", "base:placeholder"]
    seen.clear()
    assert rewrite(roots, more, base=base) == roots  # settled nodes: only the other rule
    assert sorted(seen) == ["more:add", "more:constant", "more:exp", "more:placeholder"]
    seen.clear()
    new = [gb.log(roots[0])]  # a new node gets every rule, the old ones only the other
    rewrite(new, more, base=base)
    assert sorted(seen) == ["base:log", "more:add", "more:constant", "more:exp", "more:log",
                            "more:placeholder"]
    with pytest.raises(AssertionError):
        rewrite(roots, base, base=more)
