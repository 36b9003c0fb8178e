"""Figures of the COLO secondary: block map, read provenance, timeline and block graph.

Four views, one module each, every one a small class around one matplotlib
:class:`~matplotlib.figure.Figure` that is **created once and updated in place**:
``update(lab)`` refills the same images, collections and texts, so a widget
can redraw after every scheduling decision without building anything new.

* :func:`plot_layers` — the block map: one panel per layer (secondary, hidden,
  active, the VM's view), one cell per block, coloured by the block's byte
  (:func:`byte_colour`); the legend names who wrote each colour shown.
* :func:`plot_provenance` — for one VM read, which layer served each of its
  blocks, and the bytes it returned.
* :func:`plot_timeline` — swim lanes per task: requests, CowRequest spans,
  waits, each scheduling decision, the backup workflow's steps 1–3.
* :func:`plot_graph` — the block graph (NBD server, secondary disk, hidden,
  active, replication, the guest), the backup job's copy arrow, and badges:
  where each task is parked.

A fleecing lab (:class:`labkit.fleecing.FleecingLab`) gets its own rows (``live``,
``fleece``, ``snapshot``) and its own graph per scheme (guest, backup client, NBD
export, live disk, overlay; 7.2's copy-before-write filter and ``snapshot-access``).

Matplotlib draws every pixel (blitting: the changed parts only) and Pillow
encodes the PNG; the same state gives the same bytes.  Everything shown is
*read* from the engine; nothing here re-implements block semantics.
"""

from ._common import (
                      HATCH_COLOUR,
                      LAYER_COLOURS,
                      MARK_COLOUR,
                      ORIGINAL_GREYS,
                      WRITE_PALETTE,
                      byte_colour,
                      encode_png,
                      figure_png,
                      new_figure,
)
from .graph import (
                      CLIENT,
                      GUEST,
                      NBD_SERVER,
                      GraphModel,
                      GraphPlot,
                      graph_model,
                      parked_tasks,
                      plot_graph,
)
from .layers import LayerPlot, plot_layers
from .provenance import ProvenancePlot, plot_provenance
from .timeline import Lane, TimelineModel, TimelinePlot, plot_timeline, timeline_model

__all__ = ["CLIENT", "GUEST", "HATCH_COLOUR", "LAYER_COLOURS", "MARK_COLOUR", "NBD_SERVER",
           "ORIGINAL_GREYS", "WRITE_PALETTE", "GraphModel", "GraphPlot", "Lane", "LayerPlot",
           "ProvenancePlot", "TimelineModel", "TimelinePlot", "byte_colour", "encode_png",
           "figure_png", "graph_model", "new_figure", "parked_tasks", "plot_graph",
           "plot_layers", "plot_provenance", "plot_timeline", "timeline_model"]
