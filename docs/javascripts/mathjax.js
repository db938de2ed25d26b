// MathJax configuration for pymdownx.arithmatex (generic mode). MathJax itself is
// loaded only if the reader's browser can fetch it; the formulas stay readable as TeX otherwise.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex" },
};
