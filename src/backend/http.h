// A blocking HTTP client on libcurl, one connection-reusing handle per object (use one per
// thread). Transport failures (refused, reset, timed out) are reported, not thrown, so callers
// can retry them.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace rvec::backend {

struct HttpResponse {
  long status = 0;            // 0: no HTTP response (see error)
  std::string body;
  std::string error;          // curl's message when status == 0
  bool timed_out = false;
  double retry_after_s = -1;  // the Retry-After header (seconds), -1 when absent
};

class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  // body empty and method "GET": a GET; otherwise a POST of `body` as application/json.
  HttpResponse request(const std::string& method, const std::string& url, const std::string& body,
                       const std::vector<std::string>& headers, double timeout_s);

 private:
  void* curl_;
};

// "http://user:pw@host:8000/v1?x=y" -> "http://host:8000/v1": what provenance may record.
std::string redact_url(const std::string& url);
// The server root of an OpenAI base URL: trailing '/' and a final "/v1" are removed
// ("http://h:8000/v1/" -> "http://h:8000"), like the OpenAI SDK's base_url accepts both.
std::string server_root(const std::string& base_url);

}  // namespace rvec::backend
