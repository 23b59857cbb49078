"""Coming from the course: its gradient-checking exercises as drop-in functions, and its parameter vectors.

A learner's notebook already has ``forward_propagation_n`` and ``backward_propagation_n`` in the course's layout
(samples as columns, ``b`` of shape (n, 1), gradients keyed ``dW1``, ``db1``, ... beside ``dZ1``, ``dA1``).
:func:`gradient_check_n` takes them as they are, returns the course's relative difference (the same figure the
course prints) and prints the course's message followed by preflight's localized report; :func:`gradient_check`
does the same for the 1-D exercise. :func:`course_check_n` and :func:`course_check` return both as a
:class:`CourseCheck`. :func:`dictionary_to_vector`, :func:`vector_to_dictionary` and :func:`gradients_to_vector`
ravel in the course's key order, so a learner's own vectors compare with these entry by entry.
"""

from __future__ import annotations

from preflight.course.exercises import (
    COURSE_THRESHOLD,
    CourseCheck,
    course_check,
    course_check_n,
    gradient_check,
    gradient_check_n,
)
from preflight.course.vectors import (
    EXERCISE_SHAPES,
    course_keys,
    dictionary_to_vector,
    gradients_to_vector,
    vector_to_dictionary,
)

__all__ = [
    "COURSE_THRESHOLD",
    "EXERCISE_SHAPES",
    "CourseCheck",
    "course_check",
    "course_check_n",
    "course_keys",
    "dictionary_to_vector",
    "gradient_check",
    "gradient_check_n",
    "gradients_to_vector",
    "vector_to_dictionary",
]
