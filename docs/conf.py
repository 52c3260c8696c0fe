# Sphinx configuration for the SALUS documentation site (built offline by `python docs/build.py`).
project = 'SALUS'
author = 'SALUS developers'
extensions = ['myst_nb']
nb_execution_mode = 'off'           # notebooks are rendered with the outputs they were saved with
nb_output_stderr = 'remove'         # kernel chatter on stderr is not documentation
myst_enable_extensions = ['colon_fence', 'dollarmath']
myst_heading_anchors = 3
html_theme = 'sphinx_book_theme'
html_title = 'SALUS'
html_theme_options = {'show_toc_level': 2}
exclude_patterns = ['_build']
suppress_warnings = ['mystnb.unknown_mime_type', 'myst.header']  # show_doc's H3 entries may follow the page's H1 directly
