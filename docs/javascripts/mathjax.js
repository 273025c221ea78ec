// MathJax reads the \( ... \) and \[ ... \] spans that pymdownx.arithmatex (generic mode) writes. The MathJax
// build itself is served with the site (javascripts/mathjax/tex-svg.js); its menu stays off, since the menu's
// accessibility explorer would fetch a speech engine from the network.
window.MathJax = {
  tex: { inlineMath: [["\\(", "\\)"]], displayMath: [["\\[", "\\]"]], processEscapes: true, processEnvironments: true },
  options: { ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex", enableMenu: false }
};
