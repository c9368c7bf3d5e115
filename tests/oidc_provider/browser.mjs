// The user's browser, for tests: opens the authorization URL and follows redirects with its
// cookies, as a browser does, until a page answers without one (the client's callback page).
// Prints that page's status and address (without its query, which holds the code).
const jar = new Map();
let url = process.argv[2];
for (let hop = 0; hop < 20; hop += 1) {
  const cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
  const response = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
  for (const line of response.headers.getSetCookie()) {
    const [pair, ...attributes] = line.split(';');
    const at = pair.indexOf('=');
    const name = pair.slice(0, at).trim();
    const gone = attributes.some((a) => /^\s*(max-age=0|expires=.*1970)/i.test(a));
    if (gone) jar.delete(name);
    else jar.set(name, pair.slice(at + 1).trim());
  }
  const location = response.headers.get('location');
  if (response.status < 300 || response.status >= 400 || !location) {
    console.log(`${response.status} ${url.split('?')[0]}`);
    process.exit(response.ok ? 0 : 1);
  }
  url = new URL(location, url).toString();
}
console.log('too many redirects');
process.exit(1);
