"""Reading the user's source code: the one place memwatch parses Python with ``ast``.

Probes know *which* name holds memory and which frame is running; a person needs the
*line to change* and the name in it. Three torch-free modules answer that, sharing one
parse cache (``files``) and one list of container-store methods:

* ``files`` — ``parse_file``: a file's text, ``ast`` tree and call index, cached by path,
  size and mtime (``linecache`` for code with no file, such as notebook cells);
* ``statements`` — the statement that extends a holder (``total += loss``,
  ``losses.append(loss)``, ``self.cache = torch.cat([...])``) or binds a name;
* ``calls`` — the names around the call a frame is executing (``loss`` in
  ``loss.backward(retain_graph=True)``).

Collect-side code calls these; nothing here imports torch, the watch or the detectors.
"""
