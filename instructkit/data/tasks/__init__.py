"""FLAN/T0 task system: tasks and templates as data, formats, mixtures, held-out clusters."""
