"""Lesson 00-setup: the environment report, and its exercises' tests catch mistakes."""

from __future__ import annotations

import numpy as np
import pytest
from cells import run_test_cell, solution_namespace
from conftest import solution

from xlt_course import environment

NB = solution("00-setup")


def test_environment_report_lists_everything(built_data):
    report = environment.environment_report()
    names = {c.name for c in report}
    assert {"python", "torch", "transformers", "nbgrader", "device"} <= names
    assert any(n.startswith("data: vectors-en") for n in names)
    missing = [c for c in report if not c.ok]
    assert not missing, environment.format_report(missing)


# --- exercise 1: cosine_similarity_matrix ---


def _cos_reference():
    return solution_namespace(NB, "ex1_cosine")["cosine_similarity_matrix"]


def test_ex1_reference_passes():
    run_test_cell(NB, "ex1_cosine_tests", cosine_similarity_matrix=_cos_reference())


@pytest.mark.parametrize(
    "variant",
    [
        lambda A, B: __import__("sklearn.metrics.pairwise").metrics.pairwise.cosine_similarity(
            A, B
        ),
        lambda A, B: __import__("torch").nn.functional.cosine_similarity(
            __import__("torch").as_tensor(A)[:, None, :],
            __import__("torch").as_tensor(B)[None, :, :],
            dim=-1,
        ),
        lambda A, B: (
            np.einsum("nd,md->nm", A, B)
            / np.outer(np.sqrt((A * A).sum(1)), np.sqrt((B * B).sum(1)))
        ),
    ],
    ids=["sklearn", "torch", "einsum"],
)
def test_ex1_correct_variants_pass(variant):
    run_test_cell(NB, "ex1_cosine_tests", cosine_similarity_matrix=variant)


def _inplace(A, B):
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    return A @ B.T


@pytest.mark.parametrize(
    "wrong",
    [
        lambda A, B: A @ B.T,  # no normalisation
        lambda A, B: (
            (A / np.linalg.norm(A, axis=0)) @ (B / np.linalg.norm(B, axis=0)).T
        ),  # wrong axis
        lambda A, B: (A / np.linalg.norm(A, axis=1, keepdims=True)) @ B.T,  # only A normalised
        lambda A, B: B @ A.T,  # transposed result
        _inplace,  # modifies its inputs
    ],
    ids=["dot", "axis0", "only-A", "transposed", "in-place"],
)
def test_ex1_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex1_cosine_tests", cosine_similarity_matrix=wrong)


def test_ex1_stub_gets_friendly_message():
    def stub(A, B):
        raise NotImplementedError()

    with pytest.raises(AssertionError, match="not implemented yet"):
        run_test_cell(NB, "ex1_cosine_tests", cosine_similarity_matrix=stub)


# --- exercise 2: top_k ---


def test_ex2_reference_passes():
    run_test_cell(NB, "ex2_top_k_tests", top_k=solution_namespace(NB, "ex2_top_k")["top_k"])


def _top_k_torch(s, k, float32=False):
    torch = pytest.importorskip("torch")
    s = torch.as_tensor(s, dtype=torch.float32 if float32 else None)
    return torch.topk(s, k, dim=1).indices


def _top_k_negates_in_place(s, k):
    s *= -1  # modifies its input: the statement does not forbid it
    return np.argsort(s, axis=1)[:, :k]


def _top_k_partition_then_sort(s, k):
    part = np.argpartition(s, -k, axis=1)[:, -k:]
    order = np.argsort(np.take_along_axis(s, part, axis=1), axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def _top_k_python(s, k):
    return [sorted(range(len(row)), key=lambda j: -row[j])[:k] for row in np.asarray(s).tolist()]


@pytest.mark.parametrize(
    "variant",
    [
        lambda s, k: np.argsort(-s, axis=1)[:, :k],
        lambda s, k: np.argsort(s, axis=1)[:, ::-1][:, :k],
        _top_k_torch,
        lambda s, k: _top_k_torch(s, k, float32=True),
        _top_k_negates_in_place,
        _top_k_partition_then_sort,
        _top_k_python,
    ],
    ids=[
        "argsort",
        "argsort-reversed",
        "torch",
        "torch-float32",
        "negates-in-place",
        "partition-then-sort",
        "python-lists",
    ],
)
def test_ex2_correct_variants_pass(variant):
    run_test_cell(NB, "ex2_top_k_tests", top_k=variant)


@pytest.mark.parametrize(
    "wrong",
    [
        lambda s, k: np.argsort(s, axis=1)[:, :k],  # smallest scores
        lambda s, k: np.argsort(s, axis=1)[:, -k:],  # largest but worst first
        lambda s, k: np.argpartition(s, -k, axis=1)[:, -k:],  # the k best, unordered
        # the k best, best first only where numpy's partition happens to sort them (small k)
        lambda s, k: np.argpartition(-s, k - 1, axis=1)[:, :k],
        lambda s, k: np.argsort(-s, axis=0)[:k].T,  # wrong axis
        lambda s, k: np.sort(s, axis=1)[:, ::-1][:, :k],  # scores, not indices
    ],
    ids=["smallest", "worst-first", "unsorted", "partition-not-sorted", "axis0", "values"],
)
def test_ex2_plausible_mistakes_fail(wrong):
    with pytest.raises(AssertionError):
        run_test_cell(NB, "ex2_top_k_tests", top_k=wrong)


def test_check_array_shape_hint():
    from xlt_course import checks

    with pytest.raises(AssertionError, match="Check which axis"):
        checks.check_array(np.zeros((2, 3)), (3, 2))
    with pytest.raises(AssertionError, match=r"expected \(3, 2\)\. One row per text\.$"):
        checks.check_array(np.zeros((2, 3)), (3, 2), shape_hint="One row per text.")
