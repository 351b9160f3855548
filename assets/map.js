// Map helpers for dash-leaflet's functional props; referenced from Python as
// {"variable": "digiplat.map.<name>"}. Every style is computed on the server: into
// feature.properties.style, or, for a market result, into a restyle ({styles: [...], tips: [...]}
// per GeoJSON layer id, one entry per feature by its properties.fid; app.mapview.restyles) that
// recolours the drawn layers in place (setStyle) instead of sending and redrawing their GeoJSON.
// No domain logic here.
(function () {
    var restyles = {};  // GeoJSON component id -> the restyle shown
    var drawn = {};     // GeoJSON component id -> {fid: Leaflet layer}
    var VIOLATION = "violation";  // app.mapview.VIOLATION_CLASS, the only class a style adds

    function current(id, key, fid) {
        var h = id != null ? restyles[id] : null;
        if (h && h[key] && fid != null && fid < h[key].length) {
            return h[key][fid];
        }
        return undefined;
    }
    function idOf(context) {
        return context && context.id != null ? context.id : null;
    }
    function styleOf(feature, context) {
        var s = current(idOf(context), "styles", feature.properties.fid);
        return s !== undefined ? s : (feature.properties.style || {});
    }
    function setClass(layer, style) {
        var path = layer._path;
        if (path) {
            path.classList.toggle(VIOLATION, (style.className || "").split(" ").indexOf(VIOLATION) >= 0);
        }
    }
    window.digiplat = Object.assign({}, window.digiplat, {
        map: {
            style: styleOf,
            point: function (feature, latlng, context) {
                var s = styleOf(feature, context);
                return L.circleMarker(latlng, Object.keys(s).length ? s : {radius: 6});
            },
            tooltip: function (feature, layer, context) {
                var id = idOf(context);
                var fid = feature.properties.fid;
                if (id != null && fid != null) {
                    (drawn[id] = drawn[id] || {})[fid] = layer;
                }
                var tip = function () {
                    var t = current(id, "tips", fid);
                    return t !== undefined ? t : (feature.properties.tooltip || "");
                };
                if (tip()) {
                    layer.bindTooltip(tip, {sticky: true});
                }
            },
            // Recolour the drawn layers of every id in ``all`` ({id: restyle}); layers drawn later
            // take their style from it when they are created.
            restyle: function (all) {
                Object.keys(all || {}).forEach(function (id) {
                    restyles[id] = all[id];
                    var layers = drawn[id] || {};
                    Object.keys(layers).forEach(function (fid) {
                        var layer = layers[fid];
                        var s = current(id, "styles", Number(fid));
                        if (s === undefined || !layer.setStyle) {
                            return;
                        }
                        layer.setStyle(s);
                        setClass(layer, s);
                        if (layer.isTooltipOpen && layer.isTooltipOpen()) {
                            layer.setTooltipContent(current(id, "tips", Number(fid)) || "");
                        }
                    });
                });
                return Date.now();
            }
        }
    });
    window.dash_clientside = Object.assign({}, window.dash_clientside, {
        digiplat_map: {
            restyle: function (all) {
                return window.digiplat.map.restyle(all);
            }
        }
    });
})();
