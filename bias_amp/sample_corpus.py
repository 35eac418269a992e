"""The embedded sample corpus: short, invented political news articles on ten topics, each event told in
three framings (left / center / right), 30 per leaning, three fictional outlets per leaning (10 articles
each, so outlet-disjoint splits are possible). Built deterministically from the templates and word lists
below (text written for this project; places, people and outlets are fictional), no randomness.

    python -m bias_amp.sample_corpus            # rewrite bias_amp/resources/sample_corpus.jsonl
    python -m bias_amp.sample_corpus --check    # exit 1 when the committed file differs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bias_amp.io import write_jsonl
from bias_amp.layout import LEANINGS

PATH = Path(__file__).resolve().parent / "resources" / "sample_corpus.jsonl"
VARIANTS = 3  # articles per topic and leaning

OUTLETS = {
    "left": ("The Daily Commons", "Harbor Light Press", "Open Square News"),
    "center": ("The Midline Journal", "Civic Wire Service", "Plainview Bulletin"),
    "right": ("The Ironwood Sentinel", "Frontier Standard", "Keystone Courier"),
}
PLACES = ("Ashford", "Bellmont", "Carver County", "Dunmore", "Eastbrook", "Fenwick", "Glenmoor", "Hollis Bay",
          "Ironvale", "Juniper Falls")
PEOPLE = ("Avery Lund", "Noor Basri", "Tomas Reyel", "Priya Okonkwo-Hale", "Dana Whitcombe", "Elias Varga",
          "Mei Tanaka-Ross", "Jonah Pruitt", "Lucia Ferrante", "Samuel Oduya", "Greta Holm", "Marcus Bellweather")

# Topic: title noun, subject phrase, three neutral facts (shared by all framings of an event), angles per leaning.
TOPICS = [
    dict(noun="Tax Plan", subject="the proposed overhaul of the state income tax",
         facts=["The proposal would change rates for about 2.1 million filers and shift revenue by roughly $1.4 billion over five years.",
                "Under the plan the top rate would fall from 6.9 percent to 5.5 percent, while the standard deduction would rise by $800.",
                "The budget office estimates the changes would take effect in January and be phased in over three years."],
         left=["Critics say the plan hands another windfall to corporations and the wealthy while working families carry a heavier load.",
               "Advocates for tax equity argue that billionaires should finally pay their fair share to fund schools and child care.",
               "Progressive groups warned that the cuts would starve public services that low-income communities depend on."],
         right=["Supporters say the cut returns hard-earned money to taxpayers and small businesses instead of feeding a bloated bureaucracy.",
                "Fiscal conservatives argue that lower rates reward work, spur investment and rein in government overreach.",
                "Taxpayer groups said the state has overcharged families for years and should stop spending money it does not have."],
         center=["Analysts at the budget office said the effect on revenue depends on how quickly the economy grows.",
                 "Data from the revenue department show that collections rose 3 percent last year, slightly below forecasts.",
                 "Lawmakers from both parties have filed amendments, and a committee vote is expected next month."]),
    dict(noun="Immigration Bill", subject="a bill on immigration enforcement and visas",
         facts=["The bill would add 400 enforcement officers and expand a temporary work visa program by 20,000 slots.",
                "The measure sets new deadlines for asylum hearings and funds additional immigration judges over two years.",
                "State figures list about 14,000 pending immigration cases, a number that has doubled since 2019."],
         left=["Immigrant rights advocates say the bill treats families seeking safety as criminals and ignores basic human dignity.",
               "Critics argue the measure pours money into detention contractors and corporations that profit from enforcement.",
               "Community groups warned that raids would spread fear among working families who have lived here for decades."],
         right=["Supporters say the bill finally puts border security first after years of weak enforcement and broken promises.",
                "Conservatives argue that secure borders protect taxpayers, wages and the rule of law.",
                "Sheriffs backing the measure said illegal crossings have strained local budgets and law enforcement."],
         center=["Analysts said the number of officers added is modest compared with the size of the current backlog.",
                 "Data show that crossings at the southern border fell 12 percent this spring after rising the previous year.",
                 "Lawmakers said negotiations over the visa provisions are continuing between the two chambers."]),
    dict(noun="Emissions Rule", subject="a new rule limiting emissions from power plants",
         facts=["The rule would require plants to cut carbon emissions 30 percent below 2020 levels by the end of the decade.",
                "Eleven coal and gas plants would be covered, accounting for about a quarter of the state's electricity.",
                "Regulators estimate compliance costs at $600 million, spread across utilities over eight years."],
         left=["Environmental advocates say the rule is a long overdue step to confront the climate crisis before it is too late.",
               "Climate justice groups note that polluting plants sit near low-income neighborhoods that breathe the dirtiest air.",
               "Critics accused fossil fuel corporations of spending millions to weaken the rule behind closed doors."],
         right=["Opponents call the rule a costly mandate that will raise electric bills for families and drive jobs away.",
                "Business groups say unelected regulators are using climate alarm to expand government overreach into the economy.",
                "Energy producers argue that American coal and gas keep the lights on and should not be regulated out of existence."],
         center=["Analysts said the effect on electricity prices will depend on natural gas costs and new transmission lines.",
                 "Data show the state's power sector emissions have declined about 2 percent per year since 2015.",
                 "Officials said public comments on the rule will be accepted through the end of the quarter."]),
    dict(noun="Health Care Measure", subject="a measure expanding public health insurance",
         facts=["The measure would extend coverage to about 180,000 adults and cap some prescription costs at $35 a month.",
                "It would raise hospital reimbursement rates by 4 percent and create a new office to review drug prices.",
                "The state's uninsured rate stood at 8.6 percent last year, according to the health department."],
         left=["Advocates say health care is a right and that no family should go bankrupt because someone got sick.",
               "Critics of the status quo blame insurance and drug corporations for pricing working families out of care.",
               "Community clinics say expansion would bring equity to rural and minority patients who have long gone without."],
         right=["Opponents warn the measure is a step toward government-run health care that takes choices away from patients.",
                "Conservatives say taxpayers will be stuck with the bill as costs grow faster than anyone has promised.",
                "Critics argue that more competition and less red tape, not another bureaucracy, would lower prices."],
         center=["Analysts said the cost estimate assumes enrollment grows gradually over the first three years.",
                 "Data from the health department show emergency room visits by uninsured patients rose slightly last year.",
                 "Lawmakers said the measure could be amended to address concerns raised by hospitals and insurers."]),
    dict(noun="Gun Proposal", subject="a proposal on firearm background checks and permits",
         facts=["The proposal would require background checks on private sales and create a 72-hour waiting period.",
                "It would also fund a $15 million grant program for community violence prevention over three years.",
                "State police processed about 310,000 background checks last year, up from 250,000 five years earlier."],
         left=["Advocates for gun safety say the proposal is a modest step to protect children and communities from violence.",
               "Survivors' groups argue the gun lobby and weapons corporations have blocked common-sense reform for too long.",
               "Organizers said neighborhoods hit hardest by shootings deserve investment and equity, not more thoughts and prayers."],
         right=["Gun owners say the proposal punishes law-abiding citizens and chips away at Second Amendment freedom.",
                "Critics call the waiting period government overreach that leaves people unable to defend themselves.",
                "Sportsmen's groups argue that criminals ignore the law and that the measure targets the wrong people."],
         center=["Analysts said research on waiting periods shows mixed results depending on how the laws are enforced.",
                 "Data from state police show most background checks are completed within minutes.",
                 "Lawmakers from both parties said they expect a close vote when the proposal reaches the floor."]),
    dict(noun="Voting Law", subject="a law changing voter identification and mail ballots",
         facts=["The law would require a photo ID at the polls and move the mail ballot deadline to election day.",
                "It also adds two days of early voting and funds new equipment for county election offices.",
                "About 38 percent of voters cast mail ballots in the last general election, according to state records."],
         left=["Voting rights advocates say the law will make it harder for students, seniors and communities of color to vote.",
               "Critics argue the measure is built on false claims of fraud and chips away at democracy itself.",
               "Civil rights groups vowed to challenge the law in court to protect equal access to the ballot."],
         right=["Supporters say the law restores confidence in elections and makes it easy to vote and hard to cheat.",
                "Conservatives argue that showing an ID is common sense and protects the freedom of every legal voter.",
                "Backers said clean voter rolls and secure ballots are basic safeguards that citizens have long demanded."],
         center=["Analysts said turnout effects of ID laws in other states have been small in most studies.",
                 "Data from the elections office show very few confirmed cases of fraud in recent years.",
                 "Election officials said they need clear guidance and funding before the new rules take effect."]),
    dict(noun="Tariff Package", subject="a package of tariffs on imported goods",
         facts=["The package would place a 15 percent tariff on imported steel and a 10 percent tariff on some electronics.",
                "Officials say it covers roughly $40 billion in annual imports and includes exemptions for small firms.",
                "Manufacturing employment in the region has fallen by about 9,000 jobs over the past decade."],
         left=["Labor advocates say trade deals written for multinational corporations have hollowed out working-class towns.",
               "Critics warn that tariffs act like a sales tax that falls hardest on working families at the checkout line.",
               "Union leaders argue any trade policy must include strong protections for workers and the environment."],
         right=["Supporters say the tariffs protect American jobs and stand up to unfair foreign competition.",
                "Conservatives argue the package puts American workers and manufacturers first after decades of bad deals.",
                "Business owners backing the plan said it will bring factories home and strengthen national security."],
         center=["Analysts said prices for some consumer goods could rise modestly if importers pass on the costs.",
                 "Data show steel imports have fallen 6 percent this year while domestic production held steady.",
                 "Trade officials said talks with partner countries will continue while the package is reviewed."]),
    dict(noun="School Funding Plan", subject="a plan to change how public schools are funded",
         facts=["The plan would raise per-pupil spending by $450 and change the formula that distributes state aid.",
                "Districts with fewer than 2,000 students would receive a new rural supplement under the proposal.",
                "The state currently spends about $11,800 per student, slightly below the national average."],
         left=["Advocates say the plan begins to fix an unfair system that shortchanges children in poor districts.",
               "Teachers' unions argue that decades of underfunding have hurt students and driven educators from the classroom.",
               "Critics warned that private voucher schemes would drain public schools and deepen inequity."],
         right=["Parents' groups say more money alone will not fix schools and that families deserve the freedom to choose.",
                "Conservatives argue taxpayers should see results and accountability before handing over more money.",
                "Critics said the plan grows the education bureaucracy instead of putting dollars in classrooms."],
         center=["Analysts said the new formula would shift aid toward districts with fast-growing enrollment.",
                 "Data show that test scores in the state have been roughly flat for the past four years.",
                 "Lawmakers said a revised version of the plan will be released before the budget deadline."]),
    dict(noun="Housing Ordinance", subject="an ordinance on zoning and rent increases",
         facts=["The ordinance would allow small apartment buildings near transit and cap annual rent increases at 5 percent.",
                "It also sets aside $25 million for affordable housing construction over the next four years.",
                "Median rent in the area has risen 28 percent since 2020, according to a city housing report."],
         left=["Tenant advocates say corporate landlords have been squeezing working families with rent hikes they cannot afford.",
               "Housing justice groups argue the ordinance is a step toward equity for renters pushed out of their neighborhoods.",
               "Critics said private equity firms buying up homes have turned shelter into a profit machine."],
         right=["Property owners say rent caps are government overreach that will discourage new building and shrink supply.",
                "Critics argue that cutting red tape and letting the market work would lower prices faster than new mandates.",
                "Homeowners warned that the zoning changes override local control and the freedom of communities to decide."],
         center=["Analysts said the effect of the rent cap would depend on how many units are exempt.",
                 "Data from the housing department show about 3,200 new units were permitted last year.",
                 "City council members said they will hold two more public hearings before a final vote."]),
    dict(noun="Wage Increase", subject="a proposed increase in the minimum wage",
         facts=["The proposal would raise the minimum wage from $9.50 to $15 an hour in steps over four years.",
                "About 210,000 workers earn less than $15 an hour in the state, according to labor department estimates.",
                "Tipped workers and employers with fewer than ten employees would follow a slower schedule."],
         left=["Advocates say no one working full time should live in poverty while corporations post record profits.",
               "Workers' groups argue a higher wage is a matter of dignity and equity for the people who keep the economy running.",
               "Critics say big companies have kept wages flat for years while executive pay soared."],
         right=["Small business owners warn that a mandated wage hike will force layoffs and higher prices.",
                "Conservatives argue that government should not set wages and that the free market creates opportunity.",
                "Critics said the increase would hurt the very young workers it claims to help by pricing them out of jobs."],
         center=["Analysts said studies of past increases show small effects on employment and larger effects on earnings.",
                 "Data show average hourly wages in the state rose 4.1 percent over the past year.",
                 "Lawmakers said they are considering a regional schedule that reflects differences in living costs."]),
]

TITLES = {
    "left": ("Advocates Say {place} {noun} Fails Working Families",
             "{place} {noun} Sparks Outcry Over Equity and Corporate Influence",
             "Progressives Rally Against Gaps in {place} {noun}"),
    "center": ("{place} Lawmakers Debate {noun}",
               "What the Data Show About the {place} {noun}",
               "Analysts Weigh Costs of {place} {noun}"),
    "right": ("Taxpayers Push Back on {place} {noun}",
              "{place} {noun} Draws Fire as Government Overreach",
              "Conservatives Defend Freedom in Fight Over {place} {noun}"),
}
LEADS = {
    "left": ("In {place}, the fight over {subject} is exposing how far the system tilts toward corporations.",
             "Community organizers in {place} are sounding the alarm about {subject}, calling it a test of equity.",
             "Residents of {place} packed a hearing this week on {subject}, and many said it shows who holds power."),
    "center": ("Lawmakers in {place} are weighing {subject}, with a committee hearing scheduled for later this month.",
               "Officials in {place} released new figures this week on {subject} as the debate moves ahead.",
               "{place} is the latest jurisdiction to take up {subject}, and analysts say the outcome is uncertain."),
    "right": ("In {place}, {subject} has become the latest example of government overreach paid for by taxpayers.",
              "Residents of {place} are pushing back against {subject}, warning that it puts bureaucrats ahead of freedom.",
              "A growing number of {place} families say {subject} shows what happens when Washington elites take over."),
}
FRAMES = {
    "left": ("For many working families, the stakes are high as costs keep climbing and wages lag behind.",
             "Advocates say the climate crisis, rising inequality and corporate power are all part of the same story.",
             "Organizers vowed to keep up pressure until the policy delivers real equity for marginalized communities.",
             "Labor unions and community groups say corporations have written the rules for far too long."),
    "center": ("Analysts said it is too early to know how the change would affect most residents.",
               "Data show that public opinion on the issue is closely divided, according to a recent survey of 1,200 adults.",
               "Lawmakers from both parties said they expect further changes before a final vote.",
               "Officials said a detailed cost estimate would be published before the end of the session."),
    "right": ("Many taxpayers say they simply want a government that lives within its means and respects their freedom.",
              "Critics describe the measure as one more case of government overreach by unelected bureaucrats.",
              "Small business owners warned that new mandates and red tape would cost jobs and drive families away.",
              "Conservatives argue that secure borders, safe streets and lower taxes are what voters asked for."),
}
QUOTES = {
    "left": ("This is about whether working people get a fair shot or corporations keep rigging the game",
             "We cannot keep asking the people with the least to pay the most",
             "Equity is not a slogan, it is a choice leaders make every day"),
    "center": ("We are still reviewing the numbers, and the details will matter",
               "There are reasonable arguments on both sides of this question",
               "The data show a mixed picture so far"),
    "right": ("Taxpayers are not an ATM for politicians",
              "Families deserve the freedom to make their own decisions without Washington looking over their shoulder",
              "This is government overreach, plain and simple"),
}
SPEAKERS = {
    "left": "an organizer with a local advocacy group",
    "center": "a policy analyst at a nonpartisan research institute",
    "right": "who runs a family business in {place}",
}
CLOSINGS = {
    "left": "Advocates plan a rally at the statehouse next week.",
    "center": "A final vote is expected after the committee completes its review.",
    "right": "Opponents say they will keep fighting to protect taxpayers and freedom.",
}


def article(leaning: str, topic: int, variant: int) -> dict:
    """One article: the event (topic, variant) told in `leaning`'s framing."""
    t, k = TOPICS[topic], topic * VARIANTS + variant  # k: article number within the leaning, 0..29
    place = PLACES[(topic + 3 * variant) % len(PLACES)]
    person = PEOPLE[(k + 4 * LEANINGS.index(leaning)) % len(PEOPLE)]
    angles = t[leaning]
    body = " ".join([
        LEADS[leaning][variant].format(place=place, subject=t["subject"]),
        t["facts"][variant],
        angles[variant],
        angles[(variant + 1) % len(angles)],
        FRAMES[leaning][k % len(FRAMES[leaning])],
        f'"{QUOTES[leaning][(topic + 2 * variant) % len(QUOTES[leaning])]}," said {person}, '
        + SPEAKERS[leaning].format(place=place) + ".",
        CLOSINGS[leaning],
    ])
    return dict(id=f"sample-{leaning}-{k:03d}", title=TITLES[leaning][variant].format(place=place, noun=t["noun"]),
                text=body, label=leaning, source=OUTLETS[leaning][(topic + variant) % len(OUTLETS[leaning])])


def generate() -> list[dict]:
    """All articles, grouped by leaning (left, center, right), then by id."""
    return [article(leaning, topic, v) for leaning in LEANINGS for topic in range(len(TOPICS)) for v in range(VARIANTS)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed file differs from the generator")
    args = ap.parse_args(argv)
    rows = generate()
    if args.check:
        from bias_amp.io import read_jsonl

        same = PATH.is_file() and read_jsonl(PATH) == rows
        print(f"{PATH}: {'up to date' if same else 'differs from the generator'}")
        return 0 if same else 1
    write_jsonl(PATH, rows)
    print(f"wrote {len(rows)} articles to {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
