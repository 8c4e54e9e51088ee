"""The course's offline data: word vectors, dictionaries, the topic dataset.

Loaders live in the submodules (``xlt_course.data.vectors``, ``.dictionary``, ``.topics``);
``xlt-course data build`` runs :func:`xlt_course.data.build.build_all`.
"""
