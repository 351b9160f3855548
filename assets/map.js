// Map helpers for dash-leaflet's functional props; referenced from Python as
// {"variable": "digiplat.map.<name>"}. Every style is computed on the server: into
// feature.properties.style, or, for a market result, into the layer's hideout
// ({styles: [...], tips: [...]}, one entry per feature by its properties.fid; app.mapview.restyles),
// so a result recolours the map without sending its GeoJSON again. No domain logic here.
(function () {
    function restyle(feature, context, key) {
        var h = context && context.hideout;
        var k = feature.properties && feature.properties.fid;
        if (h && h[key] && k !== undefined && k !== null && k < h[key].length) {
            return {found: true, value: h[key][k]};
        }
        return {found: false};
    }
    window.digiplat = Object.assign({}, window.digiplat, {
        map: {
            style: function (feature, context) {
                var r = restyle(feature, context, "styles");
                return r.found ? r.value : (feature.properties.style || {});
            },
            point: function (feature, latlng, context) {
                var r = restyle(feature, context, "styles");
                return L.circleMarker(latlng, (r.found ? r.value : feature.properties.style) || {radius: 6});
            },
            tooltip: function (feature, layer, context) {
                var r = restyle(feature, context, "tips");
                var tip = r.found ? r.value : feature.properties.tooltip;
                if (tip) {
                    layer.bindTooltip(tip, {sticky: true});
                }
            }
        }
    });
})();
