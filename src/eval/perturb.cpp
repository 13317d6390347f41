#include "eval/perturb.h"

#include <map>

#include "core/error.h"
#include "eval/pyrandom.h"

namespace rvec::eval {

const std::vector<std::string>& perturbation_names() {
  static const std::vector<std::string> n = {"distractor", "shuffle_choices", "fewshot_numbers"};
  return n;
}

namespace {
uint64_t mix(uint64_t seed, const std::string& s, uint64_t i) {
  uint64_t h = 1469598103934665603ull ^ seed;  // FNV-1a over the name, then the index
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  h = (h ^ i) * 1099511628211ull;
  return h >> 1;
}

bool bbh_mc(const Task& t) {
  if (t.group != "bbh" && t.group != "bbh_zeroshot") return false;
  static const PyRegex letter("^\\([A-Z]\\)$");
  for (auto& d : t.docs)
    if (!d.contains("target") || !letter.search(d["target"].get<std::string>()) ||
        d["input"].get<std::string>().find("\n(A) ") == std::string::npos)
      return false;
  return !t.docs.empty();
}

const char* kNames[] = {"Maria", "Tom", "Aisha", "Kenji", "Lucas", "Priya", "Omar", "Elena"};
const char* kThings[] = {"stamps", "marbles", "postcards", "pencils", "seashells", "coins", "stickers", "books"};
const char* kTemplates[] = {"{} has {} {} at home, which has nothing to do with this.",
                            "Last year, {} collected {} {}.", "{}'s neighbour owns {} {}."};

std::string distract(const std::string& q, PyRandom& r) {
  std::string name = kNames[r.randbelow(8)], thing = kThings[r.randbelow(8)];
  int n = int(r.randbelow(90)) + 3;
  std::string tmpl = kTemplates[r.randbelow(3)];
  std::string sent = tmpl;
  sent.replace(sent.find("{}"), 2, name);
  sent.replace(sent.find("{}"), 2, std::to_string(n));
  sent.replace(sent.find("{}"), 2, thing);
  // Insert before the last sentence (the question): after the last ". " that precedes it.
  size_t end = q.size();
  while (end > 0 && (q[end - 1] == ' ' || q[end - 1] == '\n')) end--;
  size_t cut = std::string::npos;
  for (size_t i = end; i-- > 1;)
    if (q[i] == ' ' && (q[i - 1] == '.' || q[i - 1] == '!') && i + 1 < end) {
      cut = i + 1;
      break;
    }
  if (cut == std::string::npos) return sent + " " + q;
  return q.substr(0, cut) + sent + " " + q.substr(cut);
}

std::string perturb_numbers(const std::string& s, std::map<std::string, std::string>& map, PyRandom& r) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (isdigit(static_cast<unsigned char>(s[i]))) {
      size_t j = i;
      while (j < s.size() && isdigit(static_cast<unsigned char>(s[j]))) j++;
      std::string num = s.substr(i, j - i);
      auto it = map.find(num);
      if (it == map.end()) {
        long long v = num.size() > 15 ? 0 : std::stoll(num);
        long long nv = v + 1 + static_cast<long long>(r.randbelow(9));
        it = map.emplace(num, std::to_string(nv)).first;
      }
      out += it->second;
      i = j;
    } else {
      out += s[i++];
    }
  }
  return out;
}
}  // namespace

std::pair<std::string, std::string> split_perturbed_name(const std::string& name) {
  auto p = name.find('@');
  if (p == std::string::npos) return {name, ""};
  return {name.substr(0, p), name.substr(p + 1)};
}

bool perturbation_applies(const std::string& p, const Task& t) {
  if (p == "distractor") return t.word_problem;
  if (p == "shuffle_choices") return t.type == OutputType::MultipleChoice || bbh_mc(t);
  // Not for tasks drawing exemplars from their own test split (gsm_plus): lm-eval drops the evaluated
  // doc from those draws by equality, which perturbed copies would defeat.
  if (p == "fewshot_numbers")
    return !t.fewshot_docs.empty() && !t.fewshot_split_is_test && (t.word_problem || t.group == "bbh");
  fail("unknown perturbation '{}' (known: distractor, shuffle_choices, fewshot_numbers)", p);
}

void apply_perturbation(const std::string& p, Task& t, uint64_t seed) {
  if (!perturbation_applies(p, t)) fail("perturbation '{}' does not apply to task {}", p, t.name);
  const std::string base = t.name;
  if (p == "distractor") {
    for (size_t i = 0; i < t.docs.size(); i++) {
      PyRandom r(mix(seed, base + "@distractor", i));
      t.docs[i]["question"] = distract(t.docs[i]["question"].get<std::string>(), r);
    }
  } else if (p == "shuffle_choices") {
    for (size_t i = 0; i < t.docs.size(); i++) {
      PyRandom r(mix(seed, base + "@shuffle", i));
      Doc& d = t.docs[i];
      if (t.type == OutputType::MultipleChoice) {
        auto choices = t.doc_to_choice(d);
        int gold = t.doc_to_gold(d);
        std::vector<size_t> perm(choices.size());
        for (size_t k = 0; k < perm.size(); k++) perm[k] = k;
        r.shuffle(perm);
        std::vector<std::string> nc;
        int ng = 0;
        for (size_t k = 0; k < perm.size(); k++) {
          nc.push_back(choices[perm[k]]);
          if (int(perm[k]) == gold) ng = int(k);
        }
        d["_choices"] = nc;
        d["_gold"] = ng;
      } else {
        // BBH: "(A) text" lines of the input are shuffled and relabelled; the target letter follows.
        std::string in = d["input"].get<std::string>();
        size_t start = in.find("\n(A) ");
        std::string head = in.substr(0, start + 1), body = in.substr(start + 1);
        std::vector<std::string> lines;
        size_t pos = 0;
        while (pos <= body.size()) {
          size_t nl = body.find('\n', pos);
          lines.push_back(body.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
          if (nl == std::string::npos) break;
          pos = nl + 1;
        }
        std::vector<std::string> opts;
        size_t k = 0;
        while (k < lines.size() && lines[k].size() >= 4 && lines[k][0] == '(' && lines[k][2] == ')' &&
               lines[k][1] == char('A' + opts.size()))
          opts.push_back(lines[k].substr(4)), k++;
        int gold = d["target"].get<std::string>()[1] - 'A';
        if (opts.size() < 2 || gold < 0 || gold >= int(opts.size())) continue;
        std::vector<size_t> perm(opts.size());
        for (size_t m = 0; m < perm.size(); m++) perm[m] = m;
        r.shuffle(perm);
        std::string nb;
        int ng = 0;
        for (size_t m = 0; m < perm.size(); m++) {
          nb += std::string("(") + char('A' + m) + ") " + opts[perm[m]] + "\n";
          if (int(perm[m]) == gold) ng = int(m);
        }
        for (size_t m = k; m < lines.size(); m++) nb += lines[m] + (m + 1 < lines.size() ? "\n" : "");
        if (k == lines.size() && !nb.empty()) nb.pop_back();
        d["input"] = head + nb;
        d["target"] = std::string("(") + char('A' + ng) + ")";
      }
    }
  } else if (p == "fewshot_numbers") {
    for (size_t i = 0; i < t.fewshot_docs.size(); i++) {
      PyRandom r(mix(seed, base + "@fewshot_numbers", i));
      std::map<std::string, std::string> map;
      Doc& d = t.fewshot_docs[i];
      for (auto& key : {"question", "answer", "target", "input", "solution"})
        if (d.contains(key) && d[key].is_string()) d[key] = perturb_numbers(d[key].get<std::string>(), map, r);
    }
  }
  t.name = base + "@" + p;
  t.alias = t.name;
}

}  // namespace rvec::eval
