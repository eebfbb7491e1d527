// pdx console: passkeys (WebAuthn). Enrol on the security page; sign in with the password
// then a passkey. No inline script (CSP script-src 'self'); the server checks everything.
"use strict";
(function () {
  if (!window.PublicKeyCredential || !navigator.credentials) { return; }

  function toBytes(b64url) {
    var s = b64url.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }

  function toB64url(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      return { type: d.type, id: toBytes(d.id), transports: d.transports };
    });
  }

  function creationOptions(o) {
    var copy = Object.assign({}, o);
    copy.challenge = toBytes(o.challenge);
    copy.user = Object.assign({}, o.user, { id: toBytes(o.user.id) });
    copy.excludeCredentials = descriptors(o.excludeCredentials);
    return copy;
  }

  function requestOptions(o) {
    var copy = Object.assign({}, o);
    copy.challenge = toBytes(o.challenge);
    copy.allowCredentials = descriptors(o.allowCredentials);
    return copy;
  }

  function credentialJSON(c) {
    var r = c.response, out = {
      id: c.id, rawId: toB64url(c.rawId), type: c.type,
      clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
      authenticatorAttachment: c.authenticatorAttachment || undefined,
      response: { clientDataJSON: toB64url(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = toB64url(r.attestationObject);
      out.response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      out.response.authenticatorData = toB64url(r.authenticatorData);
      out.response.signature = toB64url(r.signature);
      if (r.userHandle) { out.response.userHandle = toB64url(r.userHandle); }
    }
    return out;
  }

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function say(text) {
    var status = document.getElementById("passkey-status");
    if (status) { status.textContent = text || ""; }
  }

  function post(url, body, type) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf(), "Content-Type": type }, body: body
    }).then(function (r) {
      return r.json().then(function (j) { return { ok: r.ok, body: j }; });
    });
  }

  // Sign-in: the password first (it fetches the challenge), then the authenticator.
  var signin = document.getElementById("passkey-signin");
  if (signin) {
    signin.hidden = false;
    signin.addEventListener("click", function () {
      var form = document.getElementById("login-form");
      if (!form.reportValidity()) { return; }
      var params = new URLSearchParams();
      params.set("login", form.elements.login.value);
      params.set("password", form.elements.password.value);
      say("");
      post(signin.dataset.options, params.toString(), "application/x-www-form-urlencoded")
        .then(function (a) {
          if (!a.ok) { say(a.body.error); return null; }
          if (!a.body.options) { say(a.body.message); form.elements.totp.focus(); return null; }
          return navigator.credentials.get({ publicKey: requestOptions(a.body.options) });
        })
        .then(function (cred) {
          if (!cred) { return; }
          document.getElementById("passkey").value = JSON.stringify(credentialJSON(cred));
          form.submit();
        })
        .catch(function (e) { say(String(e && e.message || e)); });
    });
  }

  // Enrolment on the security page.
  var add = document.getElementById("passkey-add");
  if (add) {
    add.hidden = false;
    add.addEventListener("click", function () {
      say("");
      post(add.dataset.options, "", "application/json")
        .then(function (a) {
          if (!a.ok) { say(a.body.error); return null; }
          return navigator.credentials.create({ publicKey: creationOptions(a.body.options) });
        })
        .then(function (cred) {
          if (!cred) { return null; }
          var body = JSON.stringify({ credential: credentialJSON(cred) });
          return post(add.dataset.submit, body, "application/json");
        })
        .then(function (a) {
          if (!a) { return; }
          if (!a.ok) { say(a.body.error); return; }
          window.location.assign(a.body.next);
        })
        .catch(function (e) { say(String(e && e.message || e)); });
    });
  }
})();
