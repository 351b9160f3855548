// The Market page's two synchronised maps (app.server.register_market_maps): clientside
// callbacks, so a pan or zoom of one map moves the other without a server round trip.
(function () {
    // The map the user last touched (pointer, wheel, key, touch) leads: only its moves are handed
    // on. Two maps that both hand on their views can swap them forever when both move at once
    // (each sets the other to its own old view, the echo check never matches): a livelock that
    // pins the browser's CPU. Programmatic moves (the view switch, the violation zoom) set both
    // maps themselves and need no hand-over.
    let leader = null;
    function touched(event) {
        const map = event.target && event.target.closest ? event.target.closest(".leaflet-container") : null;
        if (map && map.id) {
            leader = map.id;
        }
    }
    ["pointerdown", "wheel", "keydown", "touchstart"].forEach(function (type) {
        document.addEventListener(type, touched, {capture: true, passive: true});
    });
    function latlng(c) {
        return Array.isArray(c) ? [c[0], c[1]] : [c.lat, c.lng];
    }
    function same(a, b) {
        return Math.abs(a[0] - b[0]) < 1e-9 && Math.abs(a[1] - b[1]) < 1e-9;
    }
    function setView(center, zoom) {
        return {center: latlng(center), zoom: zoom, transition: "setView", options: {animate: false}};
    }
    window.dash_clientside = Object.assign({}, window.dash_clientside, {
        digiplat_market: {
            // The map that moved (the trigger) hands its view to the other map if the user moved
            // it (it leads), unless that map is there already or the mover is hidden (single view).
            follow: function (center, zoom, targetCenter, targetZoom) {
                const noUpdate = window.dash_clientside.no_update;
                const trigger = (window.dash_clientside.callback_context.triggered || [])[0];
                const source = trigger ? document.getElementById(trigger.prop_id.split(".")[0]) : null;
                if (!source || source.id !== leader || source.offsetWidth === 0 || center == null || zoom == null) {
                    return noUpdate;
                }
                if (targetCenter != null && targetZoom === zoom && same(latlng(targetCenter), latlng(center))) {
                    return noUpdate;
                }
                return setView(center, zoom);
            },
            // The view switch: the body's classes show one or both maps (assets/style.css); the
            // maps are resized and both set to the view of the map that was on screen before.
            view: function (view, method, milpCenter, milpZoom, meritCenter, meritZoom) {
                const noUpdate = window.dash_clientside.no_update;
                const triggered = (window.dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
                const single = view === "single";
                const shown = method === "merit" ? "merit" : "milp";
                const cls = "market-body view-" + (single ? "single" : "compare") + " method-" + shown;
                const before = triggered.indexOf("market-method.value") >= 0 ? (shown === "milp" ? "merit" : "milp") : shown;
                const center = before === "milp" ? milpCenter : meritCenter;
                const zoom = before === "milp" ? milpZoom : meritZoom;
                const viewport = center != null && zoom != null ? setView(center, zoom) : noUpdate;
                const stamp = Date.now();
                return [cls, stamp, stamp, viewport, viewport];
            }
        }
    });
})();
