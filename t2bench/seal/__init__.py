"""SEAL-style self-editing: passages, self-edits, inner updates and closed-book grading."""
