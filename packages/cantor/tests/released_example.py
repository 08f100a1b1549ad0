"""The released demo's state file ``data/decision.json`` (ggg0919/cantor c549f9e), retyped field by field.

It records one real run of the demo (Gemini, the Detroit temperature chart ``images/image.png``): the
decision, the sub-tasks and sub-answers, the supplementary information and the response. Running the
official ``split_task`` and ``summary`` on it reproduces its ``sub-tasks`` and ``supplementary_information``.
"""

QUERY = "Which month is the hottest on average in Detroit?"

_RATIONALE = (
    "1. This question provides a chart of average temperature in Detroit. We need to compare the monthly average "
    "temperature in Detroit to determine which month is the hottest.\n"
    "2. In order to determine which month has the highest temperature, we need ChartSense Expert to extract the "
    "average temperature for each month."
)
_TASK = "ChartSense Expert: Extract the average temperature for each month from the chart."
_TEMPS = (
    "The average temperature in Detroit, Michigan is 26\u00b0F in January, 31\u00b0F in February, 40\u00b0F in March, "
    "50\u00b0F in April, 60\u00b0F in May, 70\u00b0F in June, 75\u00b0F in July, 73\u00b0F in August, 65\u00b0F in "
    "September, 52\u00b0F in October, 40\u00b0F in November, and 29\u00b0F in December."
)

DECISION = f" Answer: \n{_RATIONALE}\n\nModules' tasks:\n1. {_TASK}\n"
SUB_TASKS = [_TASK]
SUB_ANSWERS = [" " + _TEMPS]
SUPPLEMENTARY_INFORMATION = f"{_RATIONALE}\nModules' tasks:\n{_TASK} Answer: {_TEMPS}\n"
RESPONSE = (
    f" Rationale: {_TEMPS} The hottest month is July, with an average temperature of 75\u00b0F.\nAnswer: July"
)

DECISION_JSON = {
    "query": QUERY,
    "decision": DECISION,
    "sub-tasks": SUB_TASKS,
    "sub-answers": SUB_ANSWERS,
    "supplementary_information": SUPPLEMENTARY_INFORMATION,
    "response": RESPONSE,
}
