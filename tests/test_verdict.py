"""The hidden tests' verdict outside the kernel: what crosses, and what the grader refuses.

Unit tests of :mod:`autograder.verdict`'s codec (both directions, as the kernel and the
worker use it) and of the stubs' rules: arguments changed in place come back, the student's
exceptions keep their built-in class, anything but data is refused without running any of
the student's code. Real grading runs through it in ``test_grading_skip.py`` (every lesson's
reference, blank and wrong answers) and ``test_cheating.py``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from autograder import grading, notebooks, paths, verdict
from xlt_course.data.topics import TopicSplit

# the kernel's side: values out as data only, arguments in may hold a transformers config
kernel_encode = verdict._xltv_codec(False)[0]
kernel_decode = verdict._xltv_codec(True)[1]


def _roundtrip(value):
    """Send ``value`` as the tests would, decode it as the kernel, send it back, read it."""
    values, payload = verdict.call_payload((value,), {})
    in_kernel = kernel_decode(payload["values"])[0]
    reply = {"status": "ok", "value": kernel_encode(in_kernel)}
    return verdict.read_return("f", reply, values)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        -(2**70),
        0.1,
        float("inf"),
        -0.0,
        1 + 2j,
        "déjà ▁工具",
        b"\x00\xff",
        [1, [2.5, "x"]],
        (1, (2,)),
        {"a": 1, 2: [3], (1, 2): None},
        {3, 1, 2},
        frozenset({"a"}),
        np.arange(12, dtype=np.int32).reshape(3, 4),
        np.array([[1.5, np.nan]], dtype=np.float32),
        np.array(["ab", "c"]),
        np.zeros((0, 3)),
        np.float32(2.5),
        np.int64(-3),
        np.bool_(True),
        np.dtype("float32"),
        np.float64,
        torch.float16,
    ],
)
def test_data_comes_back_equal_and_of_the_same_type(value):
    got = _roundtrip(value)
    assert type(got) is type(value)
    if isinstance(value, np.ndarray):
        assert got.dtype == value.dtype and got.shape == value.shape
        assert np.array_equal(got, value, equal_nan=value.dtype.kind in "fc")
    elif isinstance(value, float) and value != value:
        assert got != got
    else:
        assert got == value
        if isinstance(value, float):
            assert str(got) == str(value)  # -0.0 stays -0.0


@pytest.mark.parametrize(
    "t",
    [
        torch.randn(3, 4),
        torch.arange(6).reshape(2, 3),
        torch.ones(2, dtype=torch.bfloat16),
        torch.tensor([True, False]),
        torch.randn(4, 4)[:, ::2],  # not contiguous
        torch.randn(2, 3).requires_grad_(True),
    ],
)
def test_tensors_come_back_with_their_dtype_shape_and_grad_flag(t):
    got = _roundtrip(t)
    assert type(got) is torch.Tensor and got.dtype == t.dtype and got.shape == t.shape
    assert torch.equal(got.detach(), t.detach()) and got.requires_grad == t.requires_grad


def test_pandas_tables_travel_as_labels_and_values():
    import pandas as pd

    series = pd.Series([0.5, 0.25], index=["NOUN", "VERB"], name="f1")
    got = _roundtrip(series)
    assert type(got) is pd.Series and got.name == "f1" and got.to_dict() == series.to_dict()
    frame = pd.DataFrame({"lang": ["de", "fr"], "acc": [0.7, 0.6]}, index=[3, 4])
    got = _roundtrip(frame)
    assert type(got) is pd.DataFrame and got.equals(frame)


def test_subclasses_travel_as_their_built_in_type():
    from collections import OrderedDict, namedtuple

    pair = namedtuple("pair", "a b")
    for value, kind in [
        (pair(1, 2), tuple),
        (OrderedDict(a=1), dict),
        (np.ma.masked_array([1.0, 2.0]), np.ndarray),
        (torch.nn.Parameter(torch.ones(2)), torch.Tensor),
    ]:
        assert type(kernel_decode(kernel_encode(value))) is kind


def test_what_a_correct_answer_may_plausibly_return_travels():
    # an answer that returns a generator, a zip, a range, a dict view, an exact number or
    # pandas' own arrays is as right as one that returns a list or a "U" array
    import itertools
    from collections import Counter, OrderedDict, deque
    from decimal import Decimal
    from fractions import Fraction

    import pandas as pd

    def back(value):
        return verdict.read_return("f", {"status": "ok", "value": kernel_encode(value)}, [])

    assert list(back(x * 2 for x in range(3))) == [0, 2, 4]
    assert list(back(zip([1, 2], "ab", strict=True))) == [(1, "a"), (2, "b")]
    assert list(back(map(str, [1, 2]))) == ["1", "2"]
    assert list(back(enumerate(["x"]))) == [(0, "x")]
    assert list(back(iter(range(3)))) == [0, 1, 2]
    assert list(back(itertools.compress("abc", [1, 0, 1]))) == ["a", "c"]
    assert back(range(2, 10, 3)) == range(2, 10, 3)
    # dict views keep their type, so `got == {...}.keys()` holds as it did in the kernel
    assert back({"a": 1, "b": 2}.keys()) == {"b": 0, "a": 0}.keys()
    assert back(OrderedDict(a=1).items()) == {"a": 1}.items()
    assert list(back({"a": [1]}.values())) == [[1]]
    assert back(deque([1, 2])) == [1, 2]
    assert back(Counter("aab")) == Counter("aab") and back(Counter("a"))["z"] == 0
    # exact numbers: the tests take any real number
    assert back(Fraction(2, 3)) == Fraction(2, 3) and type(back(Fraction(1, 2))) is Fraction
    assert back(Decimal("0.125")) == Decimal("0.125")
    words = np.array(["de", None, 3.5, ["x"]], dtype=object)
    got = back(words)
    assert got.dtype == object and got.shape == (4,) and got.tolist() == words.tolist()
    grid = np.array([["a", "b"], ["c", "d"]], dtype=object)
    assert np.array_equal(back(grid), grid) and back(grid).shape == (2, 2)
    assert back(np.array("x", dtype=object)).shape == ()
    assert back(np.array(["ab", "c"], dtype=np.dtypes.StringDType())).tolist() == ["ab", "c"]
    # what pandas itself returns for strings (Arrow-backed in pandas 3), and its Index
    texts = pd.Series(["de", "fr", "de"])
    assert list(back(texts.values)) == ["de", "fr", "de"]
    assert list(back(texts.unique())) == ["de", "fr"]
    assert list(back(pd.Categorical(["a", "b"]))) == ["a", "b"]
    assert list(back(pd.array([1, None], dtype="Int64"))) == [1, pd.NA]
    index = back(pd.Index(["i1", "i2"], name="id"))
    assert isinstance(index, pd.Index) and list(index) == ["i1", "i2"] and index.name == "id"
    split = TopicSplit(
        "de", texts.values, np.array([0, 1, 0]), ("x", "y"), pd.Index(["a", "b", "c"])
    )
    got_split = back(split)
    assert list(got_split.texts) == ["de", "fr", "de"] and list(got_split.ids) == ["a", "b", "c"]
    t = torch.tensor([1, 2], dtype=torch.uint16)
    assert torch.equal(back(t), t) and back(t).dtype == torch.uint16
    for bad in (
        {"t": "ndo", "s": [3], "v": ["a"]},
        {"t": "range", "v": [0, 5, 0]},
        {"t": "range", "v": [0, 5.0, 1]},
        {"t": "range", "v": [100, 10**18, 1]},  # a few bytes the tests would walk for ever
        {"t": "frac", "v": [1, 0]},
        {"t": "frac", "v": [1, 10**2000]},
        {"t": "dec", "v": "1.2.3"},
        {"t": "dec", "v": "1e10000000"},  # int() of it would take the tests minutes
        {"t": "view", "k": "items", "v": [{"t": "list", "v": [1]}]},
    ):
        with pytest.raises(ValueError, match="malformed"):
            verdict.decode_reply(bad)
    # an opaque value in a table's labels is refused like one in its values
    stamp = pd.Series([1.0], index=[object()])
    with pytest.raises(TypeError, match="returned a object"):
        back(stamp)


def test_the_course_records_and_generators_travel_and_come_back_changed():
    split = TopicSplit("de", ["a", "b"], np.array([0, 1]), ("x", "y"), ["i1", "i2"])
    rng = np.random.default_rng(5)
    values, payload = verdict.call_payload((split, rng), {})
    split_k, rng_k = kernel_decode(payload["values"])
    assert isinstance(split_k, TopicSplit) and split_k.texts == ["a", "b"]
    # the student's function draws from the generator and edits the record in place
    drawn = rng_k.random()
    split_k.texts.append("c")
    split_k.labels[0] = 9
    after = [[i, kernel_encode(v)] for i, v in enumerate((split_k, rng_k))]
    texts = split.texts
    verdict.read_return("f", {"status": "ok", "value": None, "after": after}, values)
    assert split.texts == ["a", "b", "c"] and split.texts is texts and split.labels[0] == 9
    assert rng.random() == np.random.default_rng(5).random(2)[1] and drawn != 0


def test_an_argument_returned_is_the_tests_own_object():
    x = np.ones(3)
    values, payload = verdict.call_payload((x,), {})
    (in_kernel,) = kernel_decode(payload["values"])
    in_kernel *= 2  # in place, then returned
    reply = {"status": "ok", "value": kernel_encode(in_kernel, [in_kernel])}
    reply["after"] = [[0, kernel_encode(in_kernel)]]
    got = verdict.read_return("f", reply, values)
    assert got is x and np.array_equal(x, [2.0, 2.0, 2.0])


def test_a_transformers_config_reaches_the_kernel_but_never_comes_back():
    from transformers import BertConfig

    cfg = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1)
    _, payload = verdict.call_payload((cfg,), {})
    got = kernel_decode(payload["values"])[0]
    assert type(got) is BertConfig and got.vocab_size == 100
    forged = {"t": "hfconfig", "cls": "BertConfig", "v": {"t": "dict", "k": [], "v": []}}
    with pytest.raises(ValueError, match="unknown tag"):
        verdict.decode_reply(forged)


def test_what_is_not_data_is_refused_with_its_type_named():
    class Liar:
        def __eq__(self, other):
            return True

    @dataclass
    class Mine:  # a record of the student's, not the course's
        x: int

    for value in (
        Liar(),
        np.array([Liar()], dtype=object),
        Mine(1),
        lambda: 0,
        (x for x in [Liar()]),
        {"a": [Liar()]}.values(),
    ):
        reply = {"status": "ok", "value": kernel_encode(value)}
        with pytest.raises(TypeError, match="returned a"):
            verdict.read_return("pca_2d", reply, [])
    with pytest.raises(TypeError, match="mark the tests cell"):
        verdict.call_payload((lambda x: x,), {})


@pytest.mark.parametrize(
    "payload",
    [
        {"t": "nd", "d": "|O", "s": [1], "v": base64.b64encode(b"\0" * 8).decode()},
        {"t": "nd", "d": "<f8", "s": [2], "v": base64.b64encode(b"\0" * 8).decode()},
        {"t": "nd", "d": "<f8", "s": [-1], "v": ""},
        {"t": "nd", "d": "[('a', '<f8')]", "s": [1], "v": base64.b64encode(b"\0" * 8).decode()},
        {"t": "tensor", "d": "nn", "s": [1], "v": "", "grad": False},
        {"t": "dc", "m": "os", "c": "system", "f": [], "v": []},
        {"t": "rng", "v": {"t": "dict", "k": ["bit_generator"], "v": ["os.system"]}},
        {"t": "pickle", "v": "gASVAAAAAAAAAAA="},
        {"t": "f", "v": 1.5},
        {"t": "list", "v": "abc"},
        {"no tag": 1},
        [1, 2],
        1.5,
    ],
)
def test_a_malformed_reply_is_refused_without_running_anything(payload):
    with pytest.raises(ValueError, match="malformed|unknown tag"):
        verdict.decode_reply(payload)


def test_nesting_and_size_are_bounded():
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match="deep"):
        kernel_encode(deep)
    nested: dict = {"t": "list", "v": []}
    for _ in range(100):
        nested = {"t": "list", "v": [nested]}
    with pytest.raises(ValueError, match="deep"):
        verdict.decode_reply(nested)
    with pytest.raises(ValueError, match="150 MB"):
        kernel_encode(np.zeros(20_000_000))  # 160 MB
    with pytest.raises(ValueError, match="10 million items"):
        kernel_encode([0] * 10_000_001)


def test_the_students_exception_keeps_its_built_in_class():
    reply = {
        "status": "error",
        "ename": "ShapeError",
        "evalue": "bad shape",
        "traceback": ["  File 'cell', line 3\n"],
        "bases": ["ValueError", "Exception", "BaseException", "object"],
    }
    e = verdict.remote_exception(reply)
    assert type(e) is ValueError and str(e) == "bad shape"
    out = verdict.describe(e)
    assert out["ename"] == "ShapeError" and "cell" in "".join(out["traceback"])
    stop = verdict.remote_exception({**reply, "ename": "SystemExit", "bases": ["SystemExit"]})
    assert isinstance(stop, verdict.Stop) and stop.output["ename"] == "SystemExit"


def _sender(fn, calls=None):
    """Return ``send`` for :func:`verdict.run_hidden_tests`: the handler's code, run here."""
    from cells import kernel_call

    def send(name, payload, deadline):
        if calls is not None:
            calls.append(name)
        return kernel_call(fn, name, payload)

    return send


def test_hidden_tests_run_here_on_what_the_kernel_returns():
    calls = []
    send = _sender(lambda x: np.asarray(x) * 2, calls)
    ok = "assert np.array_equal(double(np.arange(3)), [0, 2, 4])\n"
    assert verdict.run_hidden_tests(ok, ["import numpy as np"], ["double"], send) is None
    bad = "x = 1\nassert double(1) == 3, 'not tripled'\n"
    out = verdict.run_hidden_tests(bad, ["import numpy as np"], ["double"], send)
    assert out["ename"] == "AssertionError" and out["evalue"] == "not tripled"
    assert "line 2" in "".join(out["traceback"]) and "x = 1" not in "".join(out["traceback"])
    assert calls == ["double", "double"]


def test_the_hidden_tests_own_work_stops_at_the_cell_limit():
    import signal
    import time

    # a value small on the wire, slow to test: the cell, not the whole notebook, times out
    send = _sender(lambda n: n)
    slow = "n = echo(10)\nwhile True:\n    n += 1\n"
    start = time.monotonic()
    with pytest.raises(verdict.Stop) as stop:  # the worker records its output as the cell's
        verdict.run_hidden_tests(slow, [], ["echo"], send, seconds=1)
    assert time.monotonic() - start < 5
    out = stop.value.output
    assert out["ename"] == "CellTimeoutError" and out["evalue"].endswith("more than 1 s")
    # a call past the deadline: the kernel's wait keeps its own limit, the tests end after it
    late = lambda name, payload, deadline: (time.sleep(1.2), send(name, payload, deadline))[1]  # noqa: E731
    with pytest.raises(verdict.Stop) as stop:
        verdict.run_hidden_tests("assert echo(1) == 1\n", [], ["echo"], late, seconds=1)
    assert stop.value.output["ename"] == "CellTimeoutError" and stop.value.cause is None
    # tests that pass leave no timer behind, and a timer already running (a test runner's)
    # is put back with its handler
    fired = []
    before = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 60)
        assert verdict.run_hidden_tests("assert echo(2) == 2\n", [], ["echo"], send, 1) is None
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 55 < remaining <= 60 and not fired
        assert signal.getsignal(signal.SIGALRM) is not signal.default_int_handler
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


# the expected value computed after the call, from the very array the tests passed
AFTER_THE_CALL = """
x = np.array([3.0, 1.0, 2.0])
got = total(x)
assert got == x.sum(), "wrong total"
"""


def test_a_verdict_does_not_depend_on_what_the_answer_did_to_its_inputs():
    def trivial(x):  # rewrites its input into a case whose answer it knows
        x[:] = 0
        return 0.0

    def honest(x):  # sorts in place (the statement does not forbid it), then sums
        x.sort()
        return float(x.sum())

    args = (AFTER_THE_CALL, ["import numpy as np"], ["total"])
    calls = []
    out = verdict.run_hidden_tests(*args, _sender(trivial, calls))
    assert out is not None and out["evalue"] == "wrong total"
    assert calls == ["total", "total"]  # passed once with its rewrite, then failed without
    calls = []
    assert verdict.run_hidden_tests(*args, _sender(honest, calls)) is None
    assert calls == ["total", "total"]
    calls = []
    assert verdict.run_hidden_tests(*args, _sender(lambda x: float(x.sum()), calls)) is None
    assert calls == ["total"]  # nothing changed: one run


@pytest.mark.parametrize("lesson", grading.lesson_names())
def test_only_marked_cells_keep_their_verdict_in_the_kernel(lesson):
    layout = grading.lesson_layout(lesson, paths.lessons_dir() / lesson / f"{lesson}.ipynb")
    marked = {
        gid
        for gid, sources in layout.graded_sources.items()
        if verdict.kept_in_kernel(notebooks.split_hidden(sources[0])[1])
    }
    assert layout.kernel_verdict == marked
    # the cells whose tests hand the answer a function, a model or a gradient, or read the
    # kernel's own state around a call
    expected = {
        "07-translate-train-test": {"ex3_translate_test_tests"},
        "09-prompts-and-code-switching": {
            "ex1_prepend_tests",
            "ex2_prompt_module_tests",
            "ex3_code_switch_tests",  # reads the global random state around each call
        },
        "12-llm-prompting": {"ex2_scorer_tests"},
    }
    assert marked == expected.get(lesson, set())


def test_a_generator_keeps_its_seed_sequence_so_spawned_children_match():
    # rng.spawn() derives children from the seed sequence, not the state (round 6: a correct
    # answer using it got other draws than the same seed gives, and scored 0)
    rng = np.random.default_rng(5)
    values, payload = verdict.call_payload((rng,), {})
    (in_kernel,) = kernel_decode(payload["values"])
    child = in_kernel.spawn(1)[0]
    assert child.random() == np.random.default_rng(5).spawn(1)[0].random()
    after = [[0, kernel_encode(in_kernel)]]
    verdict.read_return("f", {"status": "ok", "value": None, "after": after}, values)
    assert rng.bit_generator.seed_seq.n_children_spawned == 1
    assert rng.spawn(1)[0].random() == np.random.default_rng(5).spawn(2)[1].random()


@pytest.mark.parametrize(
    "state",
    [
        {"bit_generator": "MT19937", "state": {"key": np.zeros(624, np.uint32), "pos": 10**9}},
        {"bit_generator": "Philox", "state": {}},
        {"bit_generator": "os.system", "state": {}},
    ],
)
def test_a_generator_state_that_could_crash_the_grader_is_refused(state):
    # a position past the key made numpy read out of bounds (a segfault when drawn from)
    payload = {"t": "rng", "v": kernel_encode(state), "ss": None}
    with pytest.raises(ValueError, match="malformed"):
        verdict.decode_reply(payload)


def test_a_tensor_dtype_is_one_of_torchs_own_names_only():
    for name in ("_dynamo", "nn", "float"):
        payload = {"t": "tensor", "d": name, "s": [0], "v": "", "grad": False}
        with pytest.raises(ValueError, match="malformed"):
            verdict.decode_reply(payload)


def test_a_set_of_equal_hashes_is_refused_and_reading_stops_at_the_deadline():
    import time

    collide = [1 + k * (2**61 - 1) for k in range(5000)]  # one hash: quadratic to build
    for tag in ("set", "frozenset"):
        with pytest.raises(ValueError, match="equal hashes"):
            verdict.decode_reply({"t": tag, "v": collide})
    with pytest.raises(ValueError, match="equal hashes"):
        verdict.decode_reply({"t": "dict", "k": collide, "v": [None] * len(collide)})
    reply = {"status": "ok", "value": {"t": "list", "v": list(range(100_000))}}
    with pytest.raises(TimeoutError):
        verdict.read_return("f", reply, [], deadline=time.monotonic() - 1)
    assert len(verdict.read_return("f", reply, [], deadline=None)) == 100_000


@pytest.mark.parametrize("lesson", grading.lesson_names())
def test_hidden_tests_run_in_the_worker_never_read_global_random_state(lesson):
    # the worker's generators are not the kernel's: such a check could never fail there
    layout = grading.lesson_layout(lesson, paths.lessons_dir() / lesson / f"{lesson}.ipynb")
    for gid, sources in layout.graded_sources.items():
        hidden = notebooks.split_hidden(sources[0])[1]
        if hidden and not verdict.kept_in_kernel(hidden):
            for call in ("getstate(", "get_state(", "get_rng_state(", "random.seed("):
                assert call not in hidden, (gid, call)


def test_the_call_reports_the_course_functions_it_enters_however_it_found_them():
    import pkgutil

    def fetched_at_run_time(A, B):
        # round 6: the exercise's own implementation, by a name no reading of the code sees
        ref = pkgutil.resolve_name("xlt" + "_course.shared_space:distance_ratio")
        return ref(A, B)

    A = np.random.default_rng(0).normal(size=(5, 3))
    _, payload = verdict.call_payload((A, A + 0.1), {})
    from cells import kernel_call

    reply = kernel_call(fetched_at_run_time, "distance_ratio", payload)
    assert reply["status"] == "ok"
    assert reply["course"] == ["xlt_course.shared_space.distance_ratio"]
    assert "course" not in kernel_call(lambda A, B: 1.0, "distance_ratio", payload)
    hidden = notebooks.split_hidden(
        notebooks.grade_cells(
            notebooks.read_notebook(
                paths.solutions_dir() / "01-shared-space" / "01-shared-space.ipynb"
            )
        )["ex1_distance_ratio_tests"].source
    )[1]
    assert "xlt_course.shared_space.distance_ratio" in verdict.reference_functions(hidden)


# round 6: the exercise's own implementation, fetched by names no reading of the code sees
COURSE_BY_PICKLE = """import pickle

import numpy as np


def csls_matrix(X_src_mapped: np.ndarray, Y_tgt: np.ndarray, k: int = 10) -> np.ndarray:
    course_fn = pickle.loads(bytes.fromhex(
        "63786c745f636f757273652e72657472696576616c0a63736c735f73636f7265730a2e"
    ))  # the unpickler's "global" opcode: xlt_course.retrieval.csls_scores
    return course_fn(X_src_mapped, Y_tgt, k=k)
"""
COURSE_BY_PKGUTIL = """import pkgutil


def shared_anchors(pieces_a, pieces_b) -> dict[str, list[str]]:
    return pkgutil.resolve_name("xlt" + "_course.tokenization:shared_anchors")(pieces_a, pieces_b)
"""


def test_calling_the_exercises_implementation_at_run_time_scores_0(tmp_path_factory, built_data):
    from conftest import sandboxed_batch

    subs, out = sandboxed_batch(tmp_path_factory, "course_at_run_time")
    for student, lesson, gid, source in [
        ("pickle", "02-procrustes", "ex2_csls", COURSE_BY_PICKLE),
        ("pkgutil", "04-subwords-and-anchors", "ex3_anchors", COURSE_BY_PKGUTIL),
    ]:
        nb = notebooks.read_notebook(paths.lessons_dir() / lesson / f"{lesson}.ipynb")
        notebooks.grade_cells(nb)[gid].source = source
        dest = subs / student / lesson / f"{lesson}.ipynb"
        dest.parent.mkdir(parents=True)
        dest.write_text(notebooks.dumps(nb), encoding="utf-8")
    limits = grading.GradeLimits(notebook_timeout=400, cell_timeout=40, memory_mb=2500)
    got = {r.student: r for r in grading.grade(subs, out, jobs=2, limits=limits, progress=False)}
    assert got["pickle"].points["ex2_csls_tests"][0] == 0
    assert "calls the course's implementation (xlt_course.retrieval.csls_scores)" in " | ".join(
        got["pickle"].flags
    )
    assert got["pkgutil"].points["ex3_anchors_tests"][0] == 0
    assert "(xlt_course.tokenization.shared_anchors)" in " | ".join(got["pkgutil"].flags)


def test_an_argument_changed_and_returned_comes_back_changed_in_the_second_run():
    # round 7: sorting a list in place and returning it failed the run without write-back
    def sort_in_place(xs):
        xs.sort()
        return xs

    hidden = "xs = [3, 1, 2]\ngot = sorted_copy(xs)\nassert got == [1, 2, 3], got\n"
    calls = []
    assert (
        verdict.run_hidden_tests(hidden, [], ["sorted_copy"], _sender(sort_in_place, calls)) is None
    )
    assert calls == ["sorted_copy", "sorted_copy"]


def test_each_run_of_the_tests_gets_the_whole_time():
    # round 7: a correct answer that draws from its generator runs the tests twice
    import time

    deadlines = []

    def send(name, payload, deadline):
        deadlines.append(deadline)
        from cells import kernel_call

        return kernel_call(lambda rng: float(rng.random()), name, payload)

    hidden = "import numpy as np\nr = np.random.default_rng(1)\nassert 0 <= draw(r) < 1\n"
    start = time.monotonic()
    assert verdict.run_hidden_tests(hidden, [], ["draw"], send, 30.0) is None
    assert len(deadlines) == 2 and all(d >= start + 30.0 for d in deadlines)


def test_the_watch_follows_a_thread_the_call_starts_and_the_encoding_of_its_value():
    import threading

    from cells import kernel_call

    def in_a_thread(A, B):
        # round 7: a thread escaped a watch of the calling thread only
        out = []
        t = threading.Thread(target=lambda: out.append(_course_fn()(A, B)))
        t.start()
        t.join()
        return out[0]

    def _course_fn():
        import importlib

        return importlib.import_module("xlt" + "_course.shared_space").distance_ratio

    A = np.random.default_rng(0).normal(size=(5, 3))
    _, payload = verdict.call_payload((A, A + 0.1), {})
    reply = kernel_call(in_a_thread, "distance_ratio", payload)
    assert "xlt_course.shared_space.distance_ratio" in reply["course"]

    class Meta(type):  # runs the course when the encoder looks its class up
        def __getattr__(cls, name):
            _course_fn()(A, A + 0.1)
            raise AttributeError(name)

    class Late(metaclass=Meta):
        pass

    reply = kernel_call(lambda A, B: Late(), "distance_ratio", payload)
    assert "xlt_course.shared_space.distance_ratio" in reply["course"]


def test_the_watch_is_off_where_no_reference_is_to_be_seen():
    # it slows Python-level code about 4x: the worker asks for it only where the hidden tests
    # import a reference implementation from the course
    from cells import _FROM_WIRE, _TO_WIRE, _describe

    A = np.random.default_rng(0).normal(size=(5, 3))
    _, payload = verdict.call_payload((A, A + 0.1), {})

    def fetched(A, B):
        import importlib

        return importlib.import_module("xlt" + "_course.shared_space").distance_ratio(A, B)

    content = {"name": "distance_ratio", "watch": False, **payload}
    reply = verdict._xltv_call(fetched, content, _TO_WIRE, _FROM_WIRE, _describe)
    assert reply["status"] == "ok" and "course" not in reply
    content["watch"] = True
    reply = verdict._xltv_call(fetched, content, _TO_WIRE, _FROM_WIRE, _describe)
    assert reply["course"] == ["xlt_course.shared_space.distance_ratio"]
