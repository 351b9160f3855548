// Map helpers for dash-leaflet's functional props; referenced from Python as
// {"variable": "digiplat.map.<name>"}. Every style is computed on the server into
// feature.properties.style, so this file holds no domain logic.
window.digiplat = Object.assign({}, window.digiplat, {
    map: {
        style: function (feature) {
            return feature.properties.style || {};
        },
        point: function (feature, latlng) {
            return L.circleMarker(latlng, feature.properties.style || {radius: 6});
        },
        tooltip: function (feature, layer) {
            if (feature.properties.tooltip) {
                layer.bindTooltip(feature.properties.tooltip, {sticky: true});
            }
        }
    }
});
