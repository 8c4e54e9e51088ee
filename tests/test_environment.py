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


def test_ex2_reference_and_variants_pass():
    run_test_cell(NB, "ex2_top_k_tests", top_k=solution_namespace(NB, "ex2_top_k")["top_k"])
    run_test_cell(NB, "ex2_top_k_tests", top_k=lambda s, k: np.argsort(-s, axis=1)[:, :k])
    torch = pytest.importorskip("torch")
    run_test_cell(
        NB, "ex2_top_k_tests", top_k=lambda s, k: torch.topk(torch.as_tensor(s), k, dim=1).indices
    )


@pytest.mark.parametrize(
    "wrong",
    [
        lambda s, k: np.argsort(s, axis=1)[:, :k],  # smallest scores
        lambda s, k: np.argsort(s, axis=1)[:, -k:],  # largest but worst first
        lambda s, k: np.argpartition(s, -k, axis=1)[:, -k:],  # the k best, unordered
        lambda s, k: np.argsort(-s, axis=0)[:k].T,  # wrong axis
        lambda s, k: np.sort(s, axis=1)[:, ::-1][:, :k],  # scores, not indices
    ],
    ids=["smallest", "worst-first", "unsorted", "axis0", "values"],
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
