// Demo asset: reports how the page itself was served.
fetch(location.href, { method: "HEAD" }).then((r) => {
  document.getElementById("status").textContent =
    "x-cache for this page: " + (r.headers.get("x-cache") || "(not exposed)");
});
