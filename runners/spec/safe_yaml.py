"""YAML from users (spec files, ``--set`` values): PyYAML's safe loader with two guards.

* A mapping that repeats a key is refused — PyYAML would silently keep the last value:
  ``duplicate key 'name' (line 3 and line 7)``.
* Aliases are bounded.  Before any Python object is built, the composed node graph is measured
  as it would expand (an alias counts as a copy of its anchor; shared nodes are measured once,
  so measuring takes time linear in the text) and refused above :data:`MAX_NODES`: a 1 KB
  "billion laughs" is refused in milliseconds instead of expanding to 10⁹ values downstream.

Every failure is a :class:`~sobolev.errors.ConfigError` that says what is wrong and where
(the line, or the byte offset); the caller adds the file.
"""

from __future__ import annotations

from typing import Any, Dict, Set

import yaml

from sobolev.errors import ConfigError

MAX_NODES = 100_000
"""Most YAML nodes (scalars, sequences, mappings) a document may expand to through its aliases."""
MERGE_TAG = "tag:yaml.org,2002:merge"


class SpecLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and alias bombs (module docstring)."""

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        """The mapping as composed, its scalar keys checked for repeats (merge keys ``<<`` aside)."""
        node = super().compose_mapping_node(anchor)
        seen: Dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == MERGE_TAG:
                continue
            key, line = self.construct_object(key_node), key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"duplicate key {key!r} (line {seen[key]} and line {line})")
            seen[key] = line
        return node

    def get_single_data(self) -> Any:
        """The document's value, built only once its expanded size is known to be within :data:`MAX_NODES`."""
        node = self.get_single_node()
        if node is None:
            return None
        check_expanded_size(node)
        return self.construct_document(node)


def check_expanded_size(root: yaml.Node, limit: int = MAX_NODES) -> int:
    """The number of nodes ``root`` expands to (aliases copied out); :class:`ConfigError` above ``limit``
    or for a node that contains itself.  Each distinct node is measured once."""
    sizes: Dict[int, int] = {}
    open_nodes: Set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise ConfigError(f"an alias refers to a node that contains it (line {node.start_mark.line + 1}): "
                              "it would expand without end")
        open_nodes.add(id(node))
        children = node.value if isinstance(node, yaml.SequenceNode) else (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
        total = 1 + sum(size(child) for child in children)
        if total > limit:
            raise ConfigError(f"aliases expand this YAML to more than {limit} nodes, the limit (an alias bomb?)")
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    return size(root)


def load_yaml(text: str) -> Any:
    """``text`` parsed with :class:`SpecLoader`; every failure a one-line :class:`ConfigError`."""
    try:
        return yaml.load(text, Loader=SpecLoader)
    except yaml.reader.ReaderError as exc:
        offset = len(text[: exc.position].encode())
        raise ConfigError(f"not valid YAML: character #x{exc.character:04x} at byte offset {offset}: "
                          f"{exc.reason}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise ConfigError("not valid YAML: nested too deeply") from None
