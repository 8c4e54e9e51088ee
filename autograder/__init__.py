"""The instructor's grading system of xlt-course (never imported by lessons).

Releasing lessons (``solutions/`` -> ``lessons/``), grading submissions in sandboxed
kernels, feedback, reports and the whole-course run. It may import ``xlt_course``; the
reverse is forbidden (``tests/test_import_rule.py``), and grading kernels cannot import it.
"""
