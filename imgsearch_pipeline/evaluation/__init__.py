"""Search-quality evaluation on a labelled image set (`imgsearch eval`).

`dataset` reads the labels and the queries with their relevance rules, `labels` maps the shop's labels onto
the vocabulary (to tell when a hit contradicts a query's hard constraints), `metrics` holds the ranking
measures and `runner` ingests the set through the real pipeline into its own stores and runs the queries.
"""
