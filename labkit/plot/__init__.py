"""Figures of the COLO secondary (transitional face: the graph is new, the rest moves next)."""

from ._common import figure_png, new_figure
from ._legacy import (
                      HATCH_COLOUR,
                      LAYER_COLOURS,
                      MARK_COLOUR,
                      ORIGINAL_GREYS,
                      WRITE_PALETTE,
                      LayerPlot,
                      ProvenancePlot,
                      TimelineModel,
                      TimelinePlot,
                      byte_colour,
                      plot_layers,
                      plot_provenance,
                      plot_timeline,
                      timeline_model,
)
from .graph import GUEST, NBD_SERVER, GraphPlot, graph_model, parked_tasks, plot_graph

__all__ = ["GUEST", "HATCH_COLOUR", "LAYER_COLOURS", "MARK_COLOUR", "NBD_SERVER",
           "ORIGINAL_GREYS", "WRITE_PALETTE", "GraphPlot", "LayerPlot", "ProvenancePlot",
           "TimelineModel", "TimelinePlot", "byte_colour", "figure_png", "graph_model",
           "new_figure", "parked_tasks", "plot_graph", "plot_layers", "plot_provenance",
           "plot_timeline", "timeline_model"]
