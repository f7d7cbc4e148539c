"""Looking at scenes before and after ingesting them: tables (`show`), filtered copies (`filter`),
footprint maps (`map`, PNG or HTML) and acquisition timelines (`timeline`).

`model` (rows, coverage, filters) needs only the core dependencies; the renderers (`png`, `html`,
`timeline`) need the `maps` extra and are imported only by the commands that draw.
"""
