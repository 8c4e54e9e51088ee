"""xlt-course: helpers for a Jupyter course on cross-lingual transfer learning.

Importing the package does nothing visible: no seeding, no downloads, no printing.
Submodules are imported where they are used (``from xlt_course import procrustes``).
"""

__version__ = "0.1.0"
