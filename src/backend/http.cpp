#include "backend/http.h"

#include <curl/curl.h>

#include <cmath>
#include <mutex>

#include "core/error.h"

namespace rvec::backend {

namespace {
std::once_flag g_init;

size_t on_body(char* p, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(p, size * n);
  return size * n;
}
}  // namespace

HttpClient::HttpClient() {
  std::call_once(g_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  curl_ = curl_easy_init();
  if (!curl_) fail("libcurl: cannot create a handle");
}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResponse HttpClient::request(const std::string& method, const std::string& url, const std::string& body,
                                 const std::vector<std::string>& headers, double timeout_s) {
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);  // keeps the connection cache
  HttpResponse r;
  curl_slist* hl = nullptr;
  for (auto& h : headers) hl = curl_slist_append(hl, h.c_str());
  if (method != "GET") hl = curl_slist_append(hl, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for timeouts
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, long(std::ceil(timeout_s * 1000)));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, long(std::ceil(std::min(timeout_s, 10.0) * 1000)));
  if (method != "GET") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.size()));
  }
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(hl);
  if (rc != CURLE_OK) {
    r.error = curl_easy_strerror(rc);
    r.timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    r.body.clear();
    return r;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_off_t ra = -1;
  if (curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0) r.retry_after_s = double(ra);
  return r;
}

std::string redact_url(const std::string& url) {
  std::string u = url;
  size_t scheme = u.find("://");
  size_t host = scheme == std::string::npos ? 0 : scheme + 3;
  size_t path = u.find_first_of("/?#", host);
  size_t at = u.rfind('@', path == std::string::npos ? u.size() : path);
  if (at != std::string::npos && at >= host) u.erase(host, at + 1 - host);
  size_t q = u.find_first_of("?#");
  if (q != std::string::npos) u.erase(q);
  return u;
}

std::string server_root(const std::string& base_url) {
  std::string u = base_url;
  while (!u.empty() && u.back() == '/') u.pop_back();
  if (u.size() >= 3 && u.compare(u.size() - 3, 3, "/v1") == 0) u.erase(u.size() - 3);
  while (!u.empty() && u.back() == '/') u.pop_back();
  return u;
}

}  // namespace rvec::backend
