"""Curriculum (``stages``): faster depletion stage by stage, and the reward baseline each stage implies."""
