"""Evaluation (paper Sec. 5): model vs identity vs oracle, any-folder evaluation, report."""
