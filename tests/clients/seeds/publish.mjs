// POST /publish/{channel} with the publish key: the raw text as the body, verbatim.
export function publisher(main, key) {
  return async (channel, raw) => {
    const res = await fetch(`http://${main}/publish/${encodeURIComponent(channel)}`, {
      method: 'POST', headers: { Authorization: `Bearer ${key}` }, body: raw,
    });
    if (!res.ok) throw new Error(`publish ${res.status}: ${await res.text()}`);
  };
}
