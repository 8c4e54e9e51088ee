"""nbgrader configuration for xlt-course.

`solutions/` is nbgrader's source folder and `lessons/` its release folder. Instructors use
the course CLI (`xlt-course lessons`, `xlt-course grade`), which loads this file and only
redirects the working folders to a scratch directory. Running `nbgrader` by hand from this
folder (`cd autograder && nbgrader generate_assignment 00-setup --force`) uses the same file.
"""

import os

c = get_config()  # noqa: F821  (provided by traitlets when it loads this file)

_repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

c.CourseDirectory.course_id = "xlt-course"
c.CourseDirectory.root = _repo
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "lessons"
c.CourseDirectory.submitted_directory = os.path.join("autograder", "work", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("autograder", "work", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("autograder", "work", "feedback")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_repo, "autograder", "gradebook.db")

# Student stub left where a solution region was.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Grading runs functions, never training: a notebook that needs more is broken or hostile.
c.Execute.timeout = 120
c.Execute.allow_errors = True
c.Execute.interrupt_on_timeout = True

# Keep feedback readable when a cell floods its output.
c.LimitOutput.max_lines = 500
c.LimitOutput.max_traceback = 100
