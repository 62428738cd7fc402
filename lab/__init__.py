"""lay7.ha test lab: the five-host topology booted with systemd-nspawn on one machine.

Test infrastructure only (excluded from the collection build). Usage:

    from lab import Lab
    lab = Lab()            # reads lab/topology.yml
    lab.kill("hap1"); lab.boot("hap1"); lab.cut("web2"); lab.heal("web2")
    lab.partition("hap1", "hap2"); lab.unpartition()
"""

from .core import Lab
from .errors import LabError
from .topology import Host, Topology, TopologyError, load

__all__ = ["Host", "Lab", "LabError", "Topology", "TopologyError", "load"]
