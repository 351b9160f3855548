// Shareable state (app/urlstate.py).
// merge: every change of the URL arrives as updates {key: text or null} and is merged here into
//   the URL as it is now (the State is read when this runs), so two writers never overwrite each
//   other's keys with an older copy; returns the new query for dcc.Location(refresh=False).
// apply: when the guided tour moves, set the shown page's controls to its values (parsed by the
//   server, app.urlstate.component_values); only what differs is set, and components that are
//   not in the layout (another tab is shown, or the layout has no such control) are skipped.
function digiplatQueryText(value) {
    return encodeURIComponent(value).replace(/%3A/gi, ":");
}

window.dash_clientside = Object.assign({}, window.dash_clientside, {
    digiplat_urlstate: {
        merge: function (updates, search) {
            if (!updates) {
                return window.dash_clientside.no_update;
            }
            var params = new URLSearchParams(search || "");
            Object.keys(updates).forEach(function (key) {
                if (updates[key] === null || updates[key] === undefined) {
                    params.delete(key);
                } else {
                    params.set(key, updates[key]);
                }
            });
            var parts = [];
            params.forEach(function (value, key) {
                parts.push(digiplatQueryText(key) + "=" + digiplatQueryText(value));
            });
            var merged = parts.length ? "?" + parts.join("&") : "";
            return merged === (search || "") ? window.dash_clientside.no_update : merged;
        },
        apply: function (values) {
            var api = window.dash_component_api;
            var applied = 0;
            (values || []).forEach(function (entry) {
                var component;
                try {  // getLayout throws for an id that is not in the layout
                    component = api && api.getLayout ? api.getLayout(entry.id) : undefined;
                } catch (err) {
                    component = undefined;
                }
                if (!component || !component.props) {
                    return;
                }
                var current = component.props[entry.prop];
                // the same value is not set again: each set fires the control's callbacks
                if (current !== undefined && current !== null && String(current) === String(entry.value)) {
                    return;
                }
                var props = {};
                props[entry.prop] = entry.value;
                window.dash_clientside.set_props(entry.id, props);
                applied += 1;
            });
            return applied;
        }
    }
});
