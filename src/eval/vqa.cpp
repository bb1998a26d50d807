#include "janus/eval/vqa.h"

#include <algorithm>
#include <set>
#include <unordered_map>

#include "janus/core/error.h"
#include "janus/eval/text.h"

namespace janus::eval {
namespace {

const std::unordered_map<std::string, std::string>& contractions() {
  // Verbatim from vqaEval.py (including its never-matching capitalised keys and odd entries).
  static const std::unordered_map<std::string, std::string> m = {{"aint", "ain't"},
                                                                 {"arent", "aren't"},
                                                                 {"cant", "can't"},
                                                                 {"couldve", "could've"},
                                                                 {"couldnt", "couldn't"},
                                                                 {"couldn'tve", "couldn't've"},
                                                                 {"couldnt've", "couldn't've"},
                                                                 {"didnt", "didn't"},
                                                                 {"doesnt", "doesn't"},
                                                                 {"dont", "don't"},
                                                                 {"hadnt", "hadn't"},
                                                                 {"hadnt've", "hadn't've"},
                                                                 {"hadn'tve", "hadn't've"},
                                                                 {"hasnt", "hasn't"},
                                                                 {"havent", "haven't"},
                                                                 {"hed", "he'd"},
                                                                 {"hed've", "he'd've"},
                                                                 {"he'dve", "he'd've"},
                                                                 {"hes", "he's"},
                                                                 {"howd", "how'd"},
                                                                 {"howll", "how'll"},
                                                                 {"hows", "how's"},
                                                                 {"Id've", "I'd've"},
                                                                 {"I'dve", "I'd've"},
                                                                 {"Im", "I'm"},
                                                                 {"Ive", "I've"},
                                                                 {"isnt", "isn't"},
                                                                 {"itd", "it'd"},
                                                                 {"itd've", "it'd've"},
                                                                 {"it'dve", "it'd've"},
                                                                 {"itll", "it'll"},
                                                                 {"let's", "let's"},
                                                                 {"maam", "ma'am"},
                                                                 {"mightnt", "mightn't"},
                                                                 {"mightnt've", "mightn't've"},
                                                                 {"mightn'tve", "mightn't've"},
                                                                 {"mightve", "might've"},
                                                                 {"mustnt", "mustn't"},
                                                                 {"mustve", "must've"},
                                                                 {"neednt", "needn't"},
                                                                 {"notve", "not've"},
                                                                 {"oclock", "o'clock"},
                                                                 {"oughtnt", "oughtn't"},
                                                                 {"ow's'at", "'ow's'at"},
                                                                 {"'ows'at", "'ow's'at"},
                                                                 {"'ow'sat", "'ow's'at"},
                                                                 {"shant", "shan't"},
                                                                 {"shed've", "she'd've"},
                                                                 {"she'dve", "she'd've"},
                                                                 {"she's", "she's"},
                                                                 {"shouldve", "should've"},
                                                                 {"shouldnt", "shouldn't"},
                                                                 {"shouldnt've", "shouldn't've"},
                                                                 {"shouldn'tve", "shouldn't've"},
                                                                 {"somebody'd", "somebodyd"},
                                                                 {"somebodyd've", "somebody'd've"},
                                                                 {"somebody'dve", "somebody'd've"},
                                                                 {"somebodyll", "somebody'll"},
                                                                 {"somebodys", "somebody's"},
                                                                 {"someoned", "someone'd"},
                                                                 {"someoned've", "someone'd've"},
                                                                 {"someone'dve", "someone'd've"},
                                                                 {"someonell", "someone'll"},
                                                                 {"someones", "someone's"},
                                                                 {"somethingd", "something'd"},
                                                                 {"somethingd've", "something'd've"},
                                                                 {"something'dve", "something'd've"},
                                                                 {"somethingll", "something'll"},
                                                                 {"thats", "that's"},
                                                                 {"thered", "there'd"},
                                                                 {"thered've", "there'd've"},
                                                                 {"there'dve", "there'd've"},
                                                                 {"therere", "there're"},
                                                                 {"theres", "there's"},
                                                                 {"theyd", "they'd"},
                                                                 {"theyd've", "they'd've"},
                                                                 {"they'dve", "they'd've"},
                                                                 {"theyll", "they'll"},
                                                                 {"theyre", "they're"},
                                                                 {"theyve", "they've"},
                                                                 {"twas", "'twas"},
                                                                 {"wasnt", "wasn't"},
                                                                 {"wed've", "we'd've"},
                                                                 {"we'dve", "we'd've"},
                                                                 {"weve", "we've"},
                                                                 {"werent", "weren't"},
                                                                 {"whatll", "what'll"},
                                                                 {"whatre", "what're"},
                                                                 {"whats", "what's"},
                                                                 {"whatve", "what've"},
                                                                 {"whens", "when's"},
                                                                 {"whered", "where'd"},
                                                                 {"wheres", "where's"},
                                                                 {"whereve", "where've"},
                                                                 {"whod", "who'd"},
                                                                 {"whod've", "who'd've"},
                                                                 {"who'dve", "who'd've"},
                                                                 {"wholl", "who'll"},
                                                                 {"whos", "who's"},
                                                                 {"whove", "who've"},
                                                                 {"whyll", "why'll"},
                                                                 {"whyre", "why're"},
                                                                 {"whys", "why's"},
                                                                 {"wont", "won't"},
                                                                 {"wouldve", "would've"},
                                                                 {"wouldnt", "wouldn't"},
                                                                 {"wouldnt've", "wouldn't've"},
                                                                 {"wouldn'tve", "wouldn't've"},
                                                                 {"yall", "y'all"},
                                                                 {"yall'll", "y'all'll"},
                                                                 {"y'allll", "y'all'll"},
                                                                 {"yall'd've", "y'all'd've"},
                                                                 {"y'alld've", "y'all'd've"},
                                                                 {"y'all'dve", "y'all'd've"},
                                                                 {"youd", "you'd"},
                                                                 {"youd've", "you'd've"},
                                                                 {"you'dve", "you'd've"},
                                                                 {"youll", "you'll"},
                                                                 {"youre", "you're"},
                                                                 {"youve", "you've"}};
  return m;
}

const std::unordered_map<std::string, std::string>& manual_map() {
  static const std::unordered_map<std::string, std::string> m = {
      {"none", "0"}, {"zero", "0"}, {"one", "1"},   {"two", "2"},   {"three", "3"}, {"four", "4"},
      {"five", "5"}, {"six", "6"},  {"seven", "7"}, {"eight", "8"}, {"nine", "9"},  {"ten", "10"}};
  return m;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  return out;
}

}  // namespace

std::string vqa_process_punctuation(const std::string& in) {
  static const char* kPunct[] = {";",  "/", "[", "]", "\"", "{", "}", "(", ")", "=", "+",
                                 "\\", "_", "-", ">", "<",  "@", "`", ",", "?", "!"};
  // commaStrip = (\d)(\,)(\d): searched in the original text.
  bool digit_comma_digit = false;
  for (std::size_t i = 1; i + 1 < in.size(); ++i) {
    if (in[i] == ',' && is_digit(in[i - 1]) && is_digit(in[i + 1])) digit_comma_digit = true;
  }
  std::string out = in;
  for (const char* p : kPunct) {
    const std::string ps(p);
    const bool touches_space = in.find(ps + " ") != std::string::npos || in.find(" " + ps) != std::string::npos;
    out = replace_all(out, ps, (touches_space || digit_comma_digit) ? "" : " ");
  }
  // periodStrip = (?!<=\d)(\.)(?!\d): the first group is a (malformed) lookahead that always holds at a '.', so
  // this removes every '.' not followed by a digit; re.sub(..., re.UNICODE) makes count = 32.
  std::string res;
  int removed = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '.' && removed < 32 && !(i + 1 < out.size() && is_digit(out[i + 1]))) {
      ++removed;
      continue;
    }
    res += out[i];
  }
  return res;
}

std::string vqa_process_digit_article(const std::string& in) {
  std::vector<std::string> words;
  for (auto w : split_whitespace(utf8_lower(in))) {
    const auto it = manual_map().find(w);
    if (it != manual_map().end()) w = it->second;
    if (w == "a" || w == "an" || w == "the") continue;
    words.push_back(std::move(w));
  }
  std::string out;
  for (auto& w : words) {
    const auto it = contractions().find(w);
    if (it != contractions().end()) w = it->second;
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

std::string vqa_normalize_answer(const std::string& answer) {
  std::string a = answer;
  std::replace(a.begin(), a.end(), '\n', ' ');
  std::replace(a.begin(), a.end(), '\t', ' ');
  a = strip_whitespace(a);
  return vqa_process_digit_article(vqa_process_punctuation(a));
}

double vqa_question_accuracy(const std::string& prediction, const std::vector<std::string>& gt_answers) {
  if (gt_answers.empty()) throw_input_error("VQA accuracy: a question has no ground-truth answers");
  const std::string res = vqa_normalize_answer(prediction);
  std::vector<std::string> gts = gt_answers;
  if (std::set<std::string>(gts.begin(), gts.end()).size() > 1) {
    for (auto& g : gts) g = vqa_process_punctuation(g);
  }
  // Leave-one-out by position (the official code drops the answer dict equal to the current one; dicts differ
  // by answer_id in every official file).
  double sum = 0;
  for (std::size_t i = 0; i < gts.size(); ++i) {
    int matches = 0;
    for (std::size_t j = 0; j < gts.size(); ++j) {
      if (j != i && gts[j] == res) ++matches;
    }
    sum += std::min(1.0, matches / 3.0);
  }
  return sum / static_cast<double>(gts.size());
}

VqaResult vqa_accuracy(const std::vector<VqaItem>& items) {
  if (items.empty()) throw_input_error("VQA accuracy: nothing to score (0 questions)");
  VqaResult out;
  std::map<std::string, double> ans_sum, q_sum;
  std::map<std::string, long> q_count;
  double total = 0;
  for (const auto& it : items) {
    const double acc = vqa_question_accuracy(it.prediction, it.gt_answers);
    out.per_question.push_back(100.0 * acc);
    total += acc;
    ans_sum[it.answer_type] += acc;
    ++out.answer_type_counts[it.answer_type];
    q_sum[it.question_type] += acc;
    ++q_count[it.question_type];
  }
  out.overall = 100.0 * total / static_cast<double>(items.size());
  for (const auto& [k, s] : ans_sum)
    out.per_answer_type[k] = 100.0 * s / static_cast<double>(out.answer_type_counts[k]);
  for (const auto& [k, s] : q_sum) out.per_question_type[k] = 100.0 * s / static_cast<double>(q_count[k]);
  return out;
}

}  // namespace janus::eval
