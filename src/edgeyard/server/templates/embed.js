// Draw every chart of the page from its Vega-Lite spec (the JSON block "edgeyard-charts":
// element id -> spec) with the vega-embed bundled above; no network is needed. A chart that
// fails says why in its place, and on the console.
(function () {
  "use strict";
  var block = document.getElementById("edgeyard-charts");
  var specs = JSON.parse(block.textContent);
  var options = {
    renderer: "svg",
    actions: {export: true, source: false, compiled: false, editor: false}
  };
  Object.keys(specs).forEach(function (id) {
    var el = document.getElementById(id);
    window.vegaEmbed(el, specs[id], options).catch(function (err) {
      el.classList.add("chart-error");
      el.textContent = "chart not drawn: " + err;
      console.error(err);
    });
  });
})();
