// MathJax 3 configuration for pymdownx.arithmatex (generic mode). MathJax itself (tex-svg.js,
// fonts included) is shipped with the site by docs/_hooks/mathjax.py from the django-static-mathjax
// package: no CDN, no network at build or reading time.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
};
