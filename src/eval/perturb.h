// Adversarial conditions as deterministic seeded transformations of a task's documents:
//   distractor       an irrelevant sentence with a number inserted before the question sentence of
//                    each evaluated word problem (gsm8k-format tasks);
//   shuffle_choices  multiple-choice options shuffled, the gold answer follows (sciq; bbh subtasks
//                    whose inputs list "(A) ..." options and whose target is a letter);
//   fewshot_numbers  every integer in the few-shot exemplars (question and worked answer) replaced
//                    by another one, consistently within an exemplar, so the exemplars' arithmetic
//                    no longer holds.
// The perturbed task is named "<task>@<perturbation>".
#pragma once
#include <string>
#include <vector>

#include "eval/tasks.h"

namespace rvec::eval {

const std::vector<std::string>& perturbation_names();
bool perturbation_applies(const std::string& perturbation, const Task& task);
// Applies it to `task` (docs or few-shot docs) with a seed derived from `seed`, the task name and
// each document's index; renames the task "<name>@<perturbation>". rvec::Error if unknown.
void apply_perturbation(const std::string& perturbation, Task& task, uint64_t seed);
// "gsm8k@distractor" -> {"gsm8k", "distractor"}; no '@' -> {name, ""}.
std::pair<std::string, std::string> split_perturbed_name(const std::string& name);

}  // namespace rvec::eval
