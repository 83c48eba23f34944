'use strict';

// What every request to the merchant API shares.

// The deployment's address as the merchant typed it, without a trailing slash; only
// http(s) URLs, and http only for a loopback address (a local development stack).
const baseUrl = (bundle) => {
  const raw = String((bundle.authData || {}).base_url || '').trim();
  let url;
  try {
    url = new URL(raw);
  } catch (e) {
    throw new Error(`The billing portal address is not a URL: ${raw}`);
  }
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    throw new Error('The billing portal address must start with https://');
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new Error('The billing portal address is only a scheme, a host and a path.');
  }
  return url.href.replace(/\/+$/, '');
};

const apiUrl = (bundle, path) => `${baseUrl(bundle)}${path}`;

// beforeRequest middleware: the API key on every request.
const addAuthHeader = (request, z, bundle) => {
  if (bundle.authData && bundle.authData.api_key) {
    request.headers = request.headers || {};
    request.headers.Authorization = `Bearer ${bundle.authData.api_key}`;
    request.headers.Accept = 'application/json';
  }
  return request;
};

// afterResponse middleware: a refused key says so (Zapier then asks to reconnect).
const refusedKey = (response, z) => {
  if (response.status === 401) {
    throw new z.errors.ExpiredAuthError('The API key was refused: check it, or make a new one.');
  }
  return response;
};

module.exports = { baseUrl, apiUrl, addAuthHeader, refusedKey };
