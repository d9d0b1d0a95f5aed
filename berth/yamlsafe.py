"""Loading untrusted YAML with bounded work: size, nesting depth and alias expansion.

Called by berth.manifest.load_manifest (controller Apply/Delete, clusterctl). Nothing
else in berth parses YAML from users.

Design notes
------------
Why a budget instead of a deadline. A thread cannot be stopped, and a worker process
per request costs more than the parse. Every way YAML makes a small file expensive is
counted while the file is composed, so the work is bounded by the limits below and no
deadline is needed:

- Aliases. PyYAML shares the node an alias points to, so composing and constructing a
  "billion laughs" file is cheap; the blow-up comes later, when anything walks the data
  (validation, JSON dumps). So each node is charged its *expanded* size: one for itself
  plus its children, and an alias is charged the full expanded size of its anchor. Merge
  keys (``<<: *a``) are aliases too, so they are charged the same way. The total per
  document, and the number of alias references, are capped. Scalar text is charged the
  same way: a thousand aliases of one 500 KB string are 500 MB once stored as JSON.
- Depth. The composer, pydantic and ``json`` all recurse per level; at 10,000 levels
  Python raises RecursionError. Depth is counted while composing and refused at
  MAX_DEPTH, far below any recursion limit.
- An alias to an anchor that is still being composed (``&a [*a]``) makes a cyclic
  structure; it is refused.
- Scalars whose conversion fails outside YAML's own checks (an int of more than 4300
  digits, ``2001-02-30`` as a timestamp) become YAML errors with their line.

Parsing uses libyaml's scanner and parser when PyYAML has them (a 1 MiB file takes about
a second instead of six), else PyYAML's pure-Python ones; both are state machines, not
recursive. Composing is always PyYAML's Python composer with the hooks below: libyaml's
own composer is C code that cannot be hooked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import Node, ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

MAX_MANIFEST_BYTES = 1024 * 1024    # under etcd's default 1.5 MiB request limit
MAX_DEPTH = 64                      # a berth manifest needs about 6
MAX_ALIASES = 1000                  # alias references per document
MAX_NODES = 100_000                 # nodes per document, counting every alias expansion
MAX_EXPANDED_CHARS = MAX_MANIFEST_BYTES   # scalar text per document, the same way
LIBYAML_DEPTH_PROBLEM = "exceeded maximum nesting depth"


class BudgetError(yaml.MarkedYAMLError):
    """A document exceeds one of the limits above; ``problem`` says which."""


class _Budget(Composer, SafeConstructor, Resolver):
    """Composer hooks that charge every node to a per-document budget (see the notes)."""

    if TYPE_CHECKING:     # provided by the parser the budget is mixed with
        def check_event(self, *choices: Any) -> bool: ...
        def peek_event(self) -> Any: ...
        def get_event(self) -> Any: ...
        def check_data(self) -> bool: ...
        def dispose(self) -> None: ...

    def _init_budget(self) -> None:
        self._depth = 0
        self._nodes = 0
        self._aliases = 0
        self._bytes = 0                      # scalar characters, counting alias expansions
        self._sizes: dict[int, tuple[int, int]] = {}   # id(anchored node) -> (nodes, bytes)
        self._keep: list[Node] = []          # keeps ids in _sizes unique for the document

    def compose_document(self) -> Node | None:
        self._nodes = self._aliases = self._bytes = 0
        self._sizes.clear()
        self._keep.clear()
        node: Node | None = super().compose_document()
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            return self._compose_alias()
        event = self.peek_event()
        if self._depth >= MAX_DEPTH:
            raise BudgetError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                              event.start_mark)
        start = (self._nodes, self._bytes)
        self._charge(1, 0, event.start_mark)
        self._depth += 1
        try:
            node: Node | None = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, ScalarNode):
            self._charge(0, len(node.value), event.start_mark)
        if node is not None and getattr(event, "anchor", None) is not None:
            self._sizes[id(node)] = (self._nodes - start[0], self._bytes - start[1])
            self._keep.append(node)
        return node

    def _compose_alias(self) -> Node:
        event = self.peek_event()
        anchor = event.anchor
        node = self.anchors.get(anchor)
        if node is None:
            raise ComposerError(None, None, f"found undefined alias {anchor!r}",
                                event.start_mark)
        size = self._sizes.get(id(node))
        if size is None:
            raise BudgetError(None, None, f"alias *{anchor} refers to a node that contains "
                              "it (recursive structures are not allowed)", event.start_mark)
        self._aliases += 1
        if self._aliases > MAX_ALIASES:
            raise BudgetError(None, None, f"more than {MAX_ALIASES} alias references",
                              event.start_mark)
        self._charge(*size, event.start_mark)
        self.get_event()
        return node

    def _charge(self, nodes: int, chars: int, mark: Any) -> None:
        self._nodes += nodes
        self._bytes += chars
        if self._nodes > MAX_NODES:
            raise BudgetError(None, None, f"more than {MAX_NODES} nodes once aliases are "
                              "expanded", mark)
        if self._bytes > MAX_EXPANDED_CHARS:
            raise BudgetError(None, None, f"more than {MAX_EXPANDED_CHARS} characters of "
                              "values once aliases are expanded", mark)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:
            # YAML's own checks raise ConstructorError (a YAMLError). Everything else is
            # the input too: int() of 5000 digits, a 2001-02-30 date, and PyYAML's
            # constructors assuming an explicit tag's value matches its pattern
            # ("!!int " indexes an empty string, "!!timestamp x" reads a failed match).
            problem = str(exc).splitlines()[0] if str(exc) else "invalid value"
            raise ConstructorError(None, None, f"cannot read value: {problem}",
                                   node.start_mark) from exc


class PyBoundedLoader(Reader, Scanner, Parser, _Budget):
    """The budget over PyYAML's pure-Python scanner and parser (no libyaml)."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._init_budget()

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # Checked in the scanner too: each open bracket is a possible simple key that the
        # scanner keeps for up to 1024 characters, so 1024 brackets cost O(1024²) before
        # the composer ever sees the depth.
        if self.flow_level >= MAX_DEPTH:
            raise BudgetError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                              self.get_mark())
        super().fetch_flow_collection_start(TokenClass)


def _c_loader() -> type[_Budget] | None:
    """The budget over libyaml's scanner and parser: ~6x faster on a 1 MiB file.

    Only libyaml's events are used; composing stays in Python (libyaml's composer cannot
    be hooked), and so does construction, as in yaml.CSafeLoader.
    """
    if not yaml.__with_libyaml__:
        return None
    from yaml._yaml import CParser

    class CBoundedLoader(_Budget, CParser):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._init_budget()

    return CBoundedLoader


BoundedLoader: type[_Budget] = _c_loader() or PyBoundedLoader


def load_all(text: str, loader_class: type[_Budget] | None = None) -> list[Any]:
    """Every document of ``text``; raises yaml.YAMLError (BudgetError for the limits)."""
    loader = (loader_class or BoundedLoader)(text)  # type: ignore[call-arg]
    try:
        out = []
        while loader.check_data():
            out.append(loader.get_data())
        return out
    except yaml.MarkedYAMLError as exc:
        # libyaml looks ahead up to 1024 characters and stops at its own depth of 1000
        # before the composer sees level 65: the same bound, said the same way.
        if exc.problem == LIBYAML_DEPTH_PROBLEM and not isinstance(exc, BudgetError):
            raise BudgetError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                              exc.problem_mark) from exc
        raise
    finally:
        loader.dispose()
